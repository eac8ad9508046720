"""`ablation report`."""


def register(sub) -> None:
    p = sub.add_parser("report", help="(not available yet)")
    p.set_defaults(func=None)
