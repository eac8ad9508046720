"""`ablation ui`."""


def register(sub) -> None:
    p = sub.add_parser("ui", help="(not available yet)")
    p.set_defaults(func=None)
