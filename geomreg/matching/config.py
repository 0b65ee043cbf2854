"""Frozen configuration of RegNetMamba-2 (no global config object: every module gets its own part)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class EncoderConfig:
    # Sized for CPU: cost is channels x tokens, and the 1/2 and 1/4 scales have 16x and 4x the tokens of 1/8.
    # Measured on 2 cores (benchmarks/matcher_speed.py): the first design, dims (24, 48, 128) with a self
    # block at 1/2 and two CMI layers at 1/8, took 3.3 s per 512x512 pair; this one keeps every stage of
    # the paper (SSD at three scales, CMI at three scales) and spends the channels where matching happens.
    dims: tuple[int, int, int] = (16, 32, 128)  # channels at 1/2, 1/4, 1/8
    expands: tuple[int, int, int] = (1, 2, 2)  # the 1/2 scale has 16x the tokens of 1/8: keep it narrow
    headdims: tuple[int, int, int] = (4, 8, 32)
    d_states: tuple[int, int, int] = (4, 8, 16)
    # Intra-chunk work grows with the chunk length, inter-chunk work with headdim x state / chunk length:
    # small states want short chunks (a sweep on 2 cores: 8 fastest at 1/2, 16 at 1/4, 64 at 1/8).
    chunk_sizes: tuple[int, int, int] = (8, 16, 64)
    # Self SSD blocks per scale before CMI. None at 1/2 and 1/4: there the CMI layer's cross-form SSD is the
    # scale's SSD stage (the stem's and the downsampling convolutions already mix locally). The two
    # token-heavy scales cost 16x and 4x the tokens of 1/8, so this is what brings a 512 px pair under
    # 1.5 s on two cores; the 1/8 scale, where matching is decided, keeps a self block and a full CMI layer.
    self_blocks: tuple[int, int, int] = (0, 0, 1)
    cmi_layers: tuple[int, int, int] = (1, 1, 1)  # CMI layers per scale
    # A self SSD before each cross SSD; at 1/8 the encoder's self block already precedes the single CMI layer.
    cmi_self: tuple[bool, bool, bool] = (False, False, False)
    structure_scaling: bool = True
    ssd_backend: str = "auto"  # mamba-ssm's fused kernel on CUDA when installed, pure PyTorch otherwise


@dataclass(frozen=True)
class CoarseConfig:
    threshold: float = 0.2  # on the dual-softmax probability
    border_cells: int = 1  # cells ignored along the valid region's border
    max_matches: int = 512  # per pair; the fine stage's cost grows with it (512 tie points fit any homography)
    init_log_scale: float = 2.3  # similarity scale exp(2.3) ~ 10 on unit features (learned)
    dim: int = 64  # matching descriptor size: the 1/8 features are projected to it (4096 x 4096 products at 512 px)


@dataclass(frozen=True)
class FineConfig:
    # Fine window side at 1/2 resolution (odd): 5 = +-2 fine px = +-4 px, half a coarse cell. No weight depends on
    # it: the shipped weights trained at 5 and run at 7 (RegNetMamba2.set_fine_window; their card's config),
    # which keeps a match half a cell off away from the window's border and leaves room for guided matching.
    window: int = 5
    dim: int = 32  # the window mixer runs on 2 x 25 tokens per match: cost grows with dim^2
    heads: int = 4
    # Inference position: soft-argmax over the heatmap peak +- this many cells (0: the whole window; see fine.py);
    # the whole window under-reaches (docs/benchmarks.md, "Fine stage").
    local_radius: int = 1


@dataclass(frozen=True)
class RegNetMamba2Config:
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    coarse: CoarseConfig = field(default_factory=CoarseConfig)
    fine: FineConfig = field(default_factory=FineConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RegNetMamba2Config":
        def tup(v):
            return tuple(v) if isinstance(v, list) else v

        encoder = EncoderConfig(**{k: tup(v) for k, v in d.get("encoder", {}).items()})
        coarse = dict(d.get("coarse", {}))
        if "coarse" in d and "dim" not in coarse:
            # Configs saved before CoarseConfig.dim existed projected the 1/8 features to their own width.
            coarse["dim"] = encoder.dims[2]
        return cls(encoder=encoder, coarse=CoarseConfig(**coarse), fine=FineConfig(**d.get("fine", {})))
