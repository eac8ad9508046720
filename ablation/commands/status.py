"""`ablation status`."""


def register(sub) -> None:
    p = sub.add_parser("status", help="(not available yet)")
    p.set_defaults(func=None)
