"""Methods by name: `method: {name: ...}` in a config picks one of these strategies."""
from selfimprove.methods.base import Method, StageContext
from selfimprove.methods.bstar import BStar
from selfimprove.methods.self_rewarding import SelfRewarding
from selfimprove.methods.temporal import Temporal

METHODS: dict[str, type[Method]] = {m.name: m for m in (SelfRewarding, Temporal, BStar)}


def get_method(name: str) -> Method:
    return METHODS[name]()


__all__ = ["METHODS", "Method", "StageContext", "get_method"]
