"""Shipped configs (package data): `selfimprove demo` reads demo.yaml from here, so it works from any install."""
from importlib.resources import files


def shipped(name: str):
    """A shipped config file, e.g. shipped("demo.yaml") or shipped("accelerate/ddp.yaml")."""
    return files(__name__).joinpath(name)
