"""`ablation data`."""


def register(sub) -> None:
    p = sub.add_parser("data", help="(not available yet)")
    p.set_defaults(func=None)
