"""Command-line entry points: ``run.py serve ...`` (a SUT node) and ``run.py --nodes ...`` (the LoadGen node).

``sut.cli.main`` hands over to :func:`main` when :func:`wanted` says the
command line is one of these. Both reuse ``sut.cli``'s parser and its
configuration layers (defaults -> profile -> options), so a node is
configured with the same options as a local run.
"""

from __future__ import annotations


import logging
import os
import signal
import sys
import threading

from sut.errors import BackendUnavailable, ConfigError, HarnessError

log = logging.getLogger(__name__)


def wanted(argv) -> bool:
    """Whether the command line is ``serve ...`` or names ``--nodes``."""
    argv = sys.argv[1:] if argv is None else list(argv)
    return bool(argv) and (argv[0] == "serve" or any(a == "--nodes" or a.startswith("--nodes=") for a in argv))


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "serve":
        return serve_main(argv[1:])
    return nodes_main(argv)


def _parse(argv, serve: bool):
    from sut import cli

    p = cli.parser()
    if serve:
        p.prog = "run.py serve"
        p.description = ("A SUT node for LoadGen over the network: load the backend and dataset as a local "
                         "run would and answer a LoadGen node (run.py --nodes HOST:PORT) until stopped.")
        p.add_argument("--listen", default="127.0.0.1:%d" % _default_port(),
                       help="HOST:PORT to listen on (default 127.0.0.1:%d: this host only; another "
                            "address needs --token-file; port 0 picks a free one)" % _default_port())
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    return args


def _default_port() -> int:
    from sut.network.auth import DEFAULT_PORT

    return DEFAULT_PORT


def _fail(exc: HarnessError) -> int:
    print("error: %s" % exc, file=sys.stderr, flush=True)
    return exc.exit_code


def serve_main(argv) -> int:
    import profiles
    from sut import cli
    from sut.network import auth, node

    args = _parse(argv, serve=True)
    try:
        if args.nodes:
            raise ConfigError("serve takes --listen HOST:PORT, not --nodes (that is for the LoadGen node)")
        host, port = auth.parse_address(args.listen, "--listen")
        token = auth.read_token(args.token_file) if args.token_file else None
        if token is None and not auth.is_loopback(host):
            raise ConfigError("--listen %s accepts other hosts: pass --token-file FILE (the same file on the "
                              "LoadGen node), or listen on 127.0.0.1" % args.listen)
        _check_grpc()
        cfg = profiles.resolve(args.profile, cli.overrides(args))
        print("serve: profile %s backend=%s model=%s dataset=%s path=%s" % (
            cfg.profile or "-", cfg.backend, cfg.model, cfg.dataset, cfg.dataset_path), flush=True)
        model = node.Model(cfg)
        try:
            speed = model.warm_up()
            service = node.Node(model, token, node.describe(cfg, model, speed))
            server, bound = node.start(service, host, port, model.instances + node.SPARE_THREADS)
            desc = service.description
            print("serving %s (%s, %d samples, %d instance(s)) on %s; boot id %s" % (
                cfg.model_name, desc["backend"].get("runtime") or cfg.backend, len(model), model.instances,
                auth.join_address(host, bound), desc["boot_id"]), flush=True)
            _wait_for_signal()
            print("stopping: served %d samples, refused %d calls" % (service.served, service.refused), flush=True)
            server.stop(1).wait(5)
        finally:
            model.close()
    except HarnessError as exc:
        return _fail(exc)
    return 0


def _wait_for_signal() -> None:
    stop = threading.Event()

    def handler(signum, frame):
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)
    while not stop.wait(1.0):
        pass


def _check_grpc() -> None:
    try:
        import grpc  # noqa: F401
    except ImportError:
        raise BackendUnavailable("LoadGen over the network needs grpcio for %s: pip install grpcio "
                                 "(or pip install -e '.[network]')" % sys.executable) from None


def nodes_main(argv) -> int:
    import profiles
    from sut import cli

    args = _parse(argv, serve=False)
    try:
        if args.submission or args.division or args.check_submission:
            raise ConfigError("--nodes runs single tests; --submission over the network is not supported yet")
        if args.list_profiles or args.show_config:
            raise ConfigError("--list-profiles and --show-config take no --nodes")
        addresses = [a for a in (args.nodes or "").split(",") if a.strip()]
        if not addresses:
            raise ConfigError("--nodes needs HOST:PORT[,HOST:PORT...] of running SUT nodes (run.py serve)")
        _check_grpc()
        cfg = profiles.resolve(args.profile, cli.overrides(args))
        if cfg.precision and "," in cfg.precision:
            raise ConfigError("--precision with a list runs locally only; give one precision with --nodes")
        cli.require_loadgen()
        from sut.network import auth, run  # imports LoadGen

        token = auth.read_token(args.token_file) if args.token_file else None
        print("profile %s: backend=%s model=%s dataset=%s path=%s scenario=%s mode=%s nodes=%s%s" % (
            cfg.profile or "-", cfg.backend, cfg.model, cfg.dataset, cfg.dataset_path, cfg.scenario, cfg.mode,
            ",".join(addresses), " quick" if cfg.quick else ""), flush=True)
        outcome = run.execute(cfg, addresses, token, args.on_node_failure)
    except HarnessError as exc:
        return _fail(exc)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    print(outcome.summary, end="", flush=True)
    if not outcome.ok:
        error = next(t.error for t in outcome.tests if t.error)
        print("error: %s" % error, file=sys.stderr, flush=True)
        if outcome.hung:
            sys.stderr.flush()
            os._exit(6)
        return 6
    return 0



