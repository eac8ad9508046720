"""The course's sample model, wrapped as a model family of this project.

Every module in models/ is imported by `ablation`; a family is an nn.Module
registered with its fields. Each field has a default and a rule (checked
before any run starts, and logged as an MLflow param and an Optuna param).
"""

from torch import nn

from ablation.models import AblationModel, Interval, Param, register_model


class BasicBlock(nn.Module):
    def __init__(self, input_dim, output_dim):
        super().__init__()
        self.block = nn.Sequential(nn.Linear(input_dim, output_dim), nn.ReLU())

    def forward(self, x):
        return self.block(x)


PARAMS = (
    Param("hidden_layers", 1, Interval(int, 0, 16), "BasicBlocks after the first"),
    # the size field: a study with a parameter budget solves it for every arm
    Param("hidden_dim", 256, Interval(int, 1, 8192), "units of every block"),
)


# input="window": forward gets x of shape (batch, n_concat, frame_dim) and returns
# (batch, n_classes); frame_dim and n_classes are read from the data.
@register_model("classifier", PARAMS, size_field="hidden_dim", depth_field="hidden_layers", input="window")
class Classifier(AblationModel):
    def __init__(self, *, n_concat, frame_dim, n_classes, hidden_layers, hidden_dim):
        super().__init__()
        input_dim = n_concat * frame_dim
        self.fc = nn.Sequential(
            BasicBlock(input_dim, hidden_dim),
            *[BasicBlock(hidden_dim, hidden_dim) for _ in range(hidden_layers)],
            nn.Linear(hidden_dim, n_classes),
        )

    def forward(self, x):
        return self.fc(x.flatten(1))  # (B, n, frame_dim) -> (B, n * frame_dim) -> (B, n_classes)

    def macs_per_frame(self):
        # multiply-adds to classify one frame: the report's cost column
        return sum(m.in_features * m.out_features for m in self.modules() if isinstance(m, nn.Linear))
