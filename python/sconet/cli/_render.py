"""Render-statement options shared by the commands that take foreign maps or checkpoints.

``--preset NAME`` and the render flags below say how skeleton maps were made where sconet cannot
know it (an OpenGait checkpoint, an imported heatmap tree). Every flag defaults to "not given":
together they form a :class:`sconet.render.spec.RenderSpec` (preset first, flags override).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

PresetOpt = Annotated[
    str | None,
    typer.Option(
        "--preset",
        help="Render preset the maps were made with (e.g. opengait, opengait-sigma15-joint8); "
        "the render flags override single settings.",
    ),
]
RepresentationOpt = Annotated[
    str | None,
    typer.Option(
        "--representation",
        "-r",
        help="Representation: body-only | full-body | head-lite | a .toml/.json file.",
    ),
]
SigmaLimbOpt = Annotated[
    float | None, typer.Option("--sigma-limb", help="Limb-map sigma (px on the 128 canvas).")
]
SigmaJointOpt = Annotated[float | None, typer.Option("--sigma-joint", help="Joint-map sigma.")]
GeometryOpt = Annotated[str | None, typer.Option("--geometry", help="square | aspect.")]
AlignmentOpt = Annotated[str | None, typer.Option("--alignment", help="shared | per-channel.")]
ImputeOpt = Annotated[
    str | None, typer.Option("--impute", help="Missing-keypoint imputation (e.g. linear, knn, none).")
]
HeadOpt = Annotated[
    str | None,
    typer.Option("--head", help="Head keypoints: keep | zero-scores (still scale the body) | remove."),
]


def render_spec(
    preset: str | None,
    representation: str | None = None,
    sigma_limb: float | None = None,
    sigma_joint: float | None = None,
    geometry: str | None = None,
    alignment: str | None = None,
    impute: str | None = None,
    head: str | None = None,
    **more: Any,
) -> Any:
    """The :class:`sconet.render.spec.RenderSpec` of the options given (``None`` = not given)."""
    from sconet.render.spec import RenderSpec

    return RenderSpec.from_options(
        preset,
        representation=representation,
        sigma_limb=sigma_limb,
        sigma_joint=sigma_joint,
        geometry=geometry,
        alignment=alignment,
        impute=impute,
        head=head,
        **more,
    )
