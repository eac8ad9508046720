"""`ablation list`."""


def register(sub) -> None:
    p = sub.add_parser("list", help="(not available yet)")
    p.set_defaults(func=None)
