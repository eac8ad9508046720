"""`ablation train`."""


def register(sub) -> None:
    p = sub.add_parser("train", help="(not available yet)")
    p.set_defaults(func=None)
