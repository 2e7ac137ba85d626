"""runv exec [--process FILE | ARGS...] [--tty] [--detach] [--pid-file F] ID"""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("id")
    p.add_argument("command", nargs=argparse.REMAINDER, help="the command and its arguments")
    p.add_argument("-p", "--process", default=None, help="a JSON file with the OCI process to run")
    p.add_argument("-t", "--tty", action="store_true", help="allocate a pseudo-TTY")
    p.add_argument("-d", "--detach", action="store_true", help="detach from the process")
    p.add_argument("--pid-file", default=None, help="file to write the process's pid to")
    p.add_argument("--console-socket", default=None, help="unix socket to send the pty master to")
    p.add_argument("-e", "--env", action="append", default=[], help="set an environment variable")
    p.add_argument("--cwd", default=None, help="working directory in the container")
    p.add_argument("-u", "--user", default=None, help="UID[:GID]")
    p.add_argument("-g", "--additional-gids", action="append", type=int, default=[])
    p.add_argument("--no-new-privs", action="store_true")
    p.add_argument("-c", "--cap", action="append", default=[], help="accepted for compatibility")
    p.add_argument("--apparmor", default=None, help="accepted for compatibility")
    p.add_argument("--process-label", default=None, help="accepted for compatibility")
    p.add_argument("--preserve-fds", type=int, default=0, help="accepted for compatibility")


def run(args: argparse.Namespace) -> int:
    from runv.exec import exec_process, process_from_args

    process = process_from_args(args)
    return exec_process(args.root, args.id, process, args.console_socket, args.detach, args.pid_file)
