"""`ablation predict`."""


def register(sub) -> None:
    p = sub.add_parser("predict", help="(not available yet)")
    p.set_defaults(func=None)
