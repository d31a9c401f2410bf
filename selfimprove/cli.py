"""`selfimprove` command line: demo, run, runs, show, report, sql, ui, serve."""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from importlib.resources import as_file

from selfimprove.env import apply_defaults

apply_defaults()

from selfimprove.config import ConfigError, load_config  # noqa: E402
from selfimprove.models.loading import ModelPathError  # noqa: E402
from selfimprove.storage.schema import TABLES, VIEWS  # noqa: E402
from selfimprove.tasks.answers import UnscorableTaskError  # noqa: E402
from selfimprove.tasks.data import DataError  # noqa: E402
from selfimprove.tasks.judge_probe import JudgeQualityError  # noqa: E402


def cmd_run(config_path: str | None, overrides: list[str], run_id: str | None, resume: str | None) -> int:
    cfg = load_config(config_path, overrides)
    from selfimprove.models.loading import resolve_model
    from selfimprove.tasks.common import new_run_id, store_for

    store = store_for(cfg)
    if resume:
        if store.run(resume) is None:
            raise ConfigError(f"--resume {resume}: no such run in {store.path} (see `selfimprove runs`)")
        run_id = resume
    run_id = run_id or new_run_id(cfg.project)
    try:
        resolve_model(cfg.model.path, cfg.data_dir)  # fail fast, before any flow starts
    except ModelPathError as exc:
        raise ConfigError(str(exc)) from None
    from selfimprove.flows.pipeline import selfimprove_run
    from selfimprove.prefect_server import PrefectServerError, prefect_api

    print(f"run {run_id}: {cfg.iterations} iteration(s) of {cfg.method.name} ({cfg.train.algorithm}) "
          f"on {cfg.model.path}", flush=True)
    started = time.perf_counter()
    try:
        with prefect_api():  # PREFECT_API_URL, else a temporary server that dies with this process
            selfimprove_run(config=cfg.to_dict(), run_id=run_id)
    except PrefectServerError as exc:
        print(f"selfimprove: {exc}", file=sys.stderr)
        return 1
    _print_report(store, cfg, run_id, time.perf_counter() - started)
    return 0


def _print_report(store, cfg, run_id: str, seconds: float) -> None:
    from urllib.parse import urlsplit

    from selfimprove.models.registry import experiment_name, registered_model_name, run_charts_url, tracking_uri
    from selfimprove.tasks.summary import iteration_table

    row = store.run(run_id)
    shown, parts = tracking_uri(cfg), urlsplit(tracking_uri(cfg))
    if parts.username or parts.password:  # never print credentials embedded in a tracking URI
        shown = parts._replace(netloc=(parts.hostname or "") + (f":{parts.port}" if parts.port else "")).geturl()
    remote = parts.scheme in ("http", "https")
    print(f"\nrun {run_id} finished in {seconds / 60:.1f} min\n")
    print(iteration_table(store, run_id))
    print(f"\nDuckDB:  {store.path.resolve()}  (tables: {', '.join(TABLES)}; views: {', '.join(VIEWS)})")
    print(f"MLflow:  {shown}  experiment '{experiment_name(cfg)}', parent run {row.mlflow_run_id}, "
          f"registered model '{registered_model_name(cfg, run_id)}'")
    print(f"Prefect: flow run {row.prefect_flow_run_id} ('selfimprove-run' / {run_id})")
    print(f"UIs:     selfimprove ui --set data_dir={cfg.data_dir}  (Prefect and MLflow on 127.0.0.1)")
    try:
        import mlflow

        experiment_id = mlflow.MlflowClient(tracking_uri(cfg)).get_run(row.mlflow_run_id).info.experiment_id
        ui_base = shown if remote else "http://127.0.0.1:5000"
        print(f"Charts:  {run_charts_url(ui_base, experiment_id, row.mlflow_run_id)}"
              + ("" if remote else "  (start the UIs first: the line above)"))
    except Exception as exc:  # noqa: BLE001 - a link is a convenience; the run itself finished
        logging.getLogger("selfimprove").debug("no charts link: %s", exc)
    print(f"Resume:  selfimprove run CONFIG --resume {run_id}")


def cmd_runs(config_path: str | None, overrides: list[str]) -> int:
    from selfimprove.tasks.common import store_for

    cfg = load_config(config_path, overrides)
    for r in store_for(cfg, create=False).runs():
        print(f"{r.run_id}  {r.method}  {r.created_at:%Y-%m-%d %H:%M}  {r.seed_model}")
    return 0


def cmd_show(config_path: str | None, overrides: list[str], run_id: str, show_config: bool) -> int:
    from selfimprove.tasks.common import store_for
    from selfimprove.tasks.summary import iteration_table

    store = store_for(load_config(config_path, overrides), create=False)
    row = store.run(run_id)
    if row is None:
        raise ConfigError(f"no run {run_id!r} in {store.path} (see `selfimprove runs`)")
    done = store.ledger(run_id)
    print(f"run {run_id} ({row.method}, seed {row.seed_model}), {len(done)} stages done; "
          f"last: {done[-1].stage + ' of iteration ' + str(done[-1].iteration) if done else 'none'}\n")
    print(iteration_table(store, run_id))
    if show_config:
        print(json.dumps(json.loads(row.config_json), indent=2))
    return 0


def cmd_report(config_path, overrides, run_id: str, out: str | None) -> int:
    from selfimprove.tasks.common import run_dir, store_for
    from selfimprove.tasks.report import write_report

    cfg = load_config(config_path, overrides)
    store = store_for(cfg, create=False)
    if store.run(run_id) is None:
        raise ConfigError(f"no run {run_id!r} in {store.path} (see `selfimprove runs`)")
    for path in write_report(store, run_id, out or run_dir(cfg, run_id) / "report"):
        print(path)
    return 0


def cmd_sql(config_path, overrides, query: str) -> int:
    """Read-only SQL over the project's DuckDB file (tables and views listed in the README)."""
    from selfimprove.tasks.common import store_for

    store = store_for(load_config(config_path, overrides), create=False)
    try:
        rows = store.query(query)
    except Exception as exc:  # noqa: BLE001 - DuckDB's parser/binder errors are the user's answer
        print(f"selfimprove sql: {exc}", file=sys.stderr)
        return 2
    if rows:
        print("\t".join(rows[0]))
        for row in rows:
            print("\t".join("" if v is None else str(v) for v in row.values()))
    print(f"({len(rows)} rows)", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="selfimprove", description=__doc__)
    sub = parser.add_subparsers(dest="verb", required=True)

    def common(p, config_required: bool):
        if config_required:
            p.add_argument("config", help="YAML config (see configs/)")
        else:
            p.add_argument("--config", default=None, help="YAML config whose data_dir/project to read")
        p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config field, e.g. --set train.beta=0.2 (repeatable)")

    demo = sub.add_parser("demo", help="Self-Rewarding on the embedded SmolLM2-135M-Instruct (about 15 min on 2 CPUs)")
    demo.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    run = sub.add_parser("run", help="run (or resume) a configured pipeline")
    common(run, True)
    run.add_argument("--run-id", default=None, help="name the new run (default: <project>-<time>-<hex>)")
    run.add_argument("--resume", default=None, metavar="RUN_ID", help="continue a run that stopped")
    runs = sub.add_parser("runs", help="list runs in the project's DuckDB file")
    common(runs, False)
    show = sub.add_parser("show", help="a run's iteration table and progress")
    show.add_argument("run_id")
    show.add_argument("--print-config", action="store_true")
    common(show, False)
    report = sub.add_parser("report", help="PNG plots and a markdown summary of a run")
    report.add_argument("run_id")
    report.add_argument("--out", default=None, help="folder (default: <data_dir>/runs/RUN_ID/report)")
    common(report, False)
    sql = sub.add_parser("sql", help='read-only SQL over every record, e.g. "SELECT * FROM iteration_summary"')
    sql.add_argument("query")
    common(sql, False)
    ui = sub.add_parser("ui", help="Prefect server + MLflow UI on 127.0.0.1 (Ctrl-C stops both)")
    ui.add_argument("--prefect-port", type=int, default=4200)
    ui.add_argument("--mlflow-port", type=int, default=5000)
    common(ui, False)
    serve = sub.add_parser("serve", help="serve a scheduled deployment of a config (needs PREFECT_API_URL)")
    common(serve, True)
    serve.add_argument("--cron", default=None, help='e.g. "0 3 * * *" (daily at 03:00)')
    serve.add_argument("--interval", type=float, default=None, metavar="SECONDS")
    serve.add_argument("--name", default=None, help="deployment name (default: <project>-<method>)")
    serve.add_argument("--resume-unfinished", action="store_true",
                       help="a scheduled start continues the newest unfinished run of this config")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("selfimprove").setLevel(logging.INFO)
    try:
        if args.verb == "demo":
            from selfimprove.configs import shipped

            with as_file(shipped("demo.yaml")) as demo_config:
                return cmd_run(str(demo_config), args.overrides, None, None)
        if args.verb == "run":
            return cmd_run(args.config, args.overrides, args.run_id, args.resume)
        if args.verb == "runs":
            return cmd_runs(args.config, args.overrides)
        if args.verb == "report":
            return cmd_report(args.config, args.overrides, args.run_id, args.out)
        if args.verb == "sql":
            return cmd_sql(args.config, args.overrides, args.query)
        if args.verb == "ui":
            from selfimprove.ui import run_ui

            return run_ui(load_config(args.config, args.overrides), prefect_port=args.prefect_port,
                          mlflow_port=args.mlflow_port)
        if args.verb == "serve":
            from selfimprove.serve import serve

            return serve(load_config(args.config, args.overrides), args.cron, args.interval, args.name,
                         args.resume_unfinished)
        return cmd_show(args.config, args.overrides, args.run_id, args.print_config)
    except ConfigError as exc:
        print(f"selfimprove: config error: {exc}", file=sys.stderr)
        return 2
    except (DataError, ModelPathError, UnscorableTaskError, JudgeQualityError, FileNotFoundError) as exc:
        print(f"selfimprove: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
