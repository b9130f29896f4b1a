"""The CycleGAN game (Zhu et al. 2017): G_AB and G_BA translate between two unpaired domains, D_A and D_B
judge each domain (least squares in the paper's preset), and the translations must come back:
|G_BA(G_AB(a)) - a| and |G_AB(G_BA(b)) - b| weighted ``game.lambda_cycle``, plus the identity terms
|G_AB(b) - b| and |G_BA(a) - a| weighted ``lambda_identity x lambda_cycle``. The Ds see fakes from a
history of the last ``game.pool_size`` generated images, kept in checkpoints so a resume is exact."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from gankit.config import Config
from gankit.data import TensorSource
from gankit.games.base import GAMES, Carry, Phase, Runtime, Stats, sample_path
from gankit.games.translation import TRANSLATION_ROLES, TranslationGame, checked_task, translation_game
from gankit.models.registry import declare_roles
from gankit.models.translation import build_patch_discriminator, build_translator
from gankit.run_state import RunState
from gankit.models.inference import run_eval
from gankit.translation.grids import write_rows
from gankit.translation.tasks import UnpairedTask, to_float


class ImagePool:
    """Shrivastava et al. 2017: while filling, pass the new images through; when full, each image is swapped
    with a random stored one half of the time. Draws come from the game's stream, a fixed number per image."""

    def __init__(self, size: int) -> None:
        self.size, self.count = size, 0
        self.images: torch.Tensor | None = None

    def query(self, images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        images = images.detach()
        if self.size == 0:
            return images
        if self.images is None:
            self.images = torch.zeros(self.size, *images.shape[1:], device=images.device, dtype=images.dtype)
        swap = torch.rand(len(images), generator=gen, device=gen.device).tolist()
        slot = torch.randint(self.size, (len(images),), generator=gen, device=gen.device).tolist()
        out = []
        for image, u, j in zip(images, swap, slot):
            if self.count < self.size:
                self.images[self.count] = image
                self.count += 1
                out.append(image)
            elif u < 0.5:
                out.append(self.images[j].clone())
                self.images[j] = image
            else:
                out.append(image)
        return torch.stack(out)

    def state_dict(self) -> dict[str, Any]:
        return {"count": self.count, "images": None if self.images is None else self.images[:self.count]}

    def load_state_dict(self, state: dict[str, Any], like: torch.Tensor) -> None:
        self.count = int(state["count"])
        self.images = None
        if state["images"] is not None:
            self.images = torch.zeros(self.size, *state["images"].shape[1:], device=like.device, dtype=like.dtype)
            self.images[:self.count] = state["images"].to(like.device)


@dataclass
class CycleGAN(TranslationGame):
    """Phases: the generators' update (adversarial, cycle and identity terms), then both Ds' on history fakes."""

    name = "cyclegan"
    pools: dict[str, ImagePool] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.pools = {"A": ImagePool(self.cfg.game.pool_size), "B": ImagePool(self.cfg.game.pool_size)}
        self.phases = (Phase("G", "g", self.generator_loss, trains=("g_ab", "g_ba"), frozen=("d_a", "d_b")),
                       Phase("D", "d", self.discriminator_loss, trains=("d_a", "d_b"), after=self.after_d,
                             counts_images=True))

    def generator_loss(self, run: RunState, carry: Carry, i: int) -> tuple[torch.Tensor, Stats]:
        assert self.objective is not None
        cfg, n = self.cfg.game, self.nets
        real_a, _ = self.stream_next("A")
        real_b, _ = self.stream_next("B")
        noise = self.objective.noise_std(run.step, run.noise_steps)
        fake_b, fake_a = n["g_ab"](real_a), n["g_ba"](real_b)
        carry.update(noise=noise, real_a=real_a, real_b=real_b, fake_a=fake_a, fake_b=fake_b)
        cycle = (n["g_ba"](fake_b) - real_a).abs().mean() + (n["g_ab"](fake_a) - real_b).abs().mean()
        loss = cfg.lambda_cycle * cycle
        stats: Stats = {"cycle": cycle.detach()}
        if cfg.lambda_identity > 0:
            identity = (n["g_ab"](real_b) - real_b).abs().mean() + (n["g_ba"](real_a) - real_a).abs().mean()
            loss = loss + cfg.lambda_identity * cfg.lambda_cycle * identity
            stats["identity"] = identity.detach()
        for side, d, fake in (("a", n["d_a"], fake_a), ("b", n["d_b"], fake_b)):
            adv, _ = self.objective.generator_loss(d, fake, None, noise, self.rng)
            loss = loss + adv
            stats[f"loss_g_{side}"] = adv.detach()
        return loss, stats

    def discriminator_loss(self, run: RunState, carry: Carry, i: int) -> tuple[torch.Tensor, Stats]:
        assert self.objective is not None
        loss = torch.zeros((), device=self.device)
        stats: Stats = {}
        for side in ("a", "b"):
            judged = self.pools[side.upper()].query(carry[f"fake_{side}"], self.rng)
            part, d_stats = self.objective.discriminator_loss(self.nets[f"d_{side}"], carry[f"real_{side}"], judged,
                                                              None, carry["noise"], self.rng, d_step=run.step)
            loss = loss + part
            stats.update({f"{k}_{side}": v for k, v in d_stats.items()})
        stats["d_fake"] = 0.5 * (stats["d_fake_a"] + stats["d_fake_b"])  # what the health alarm watches
        return loss, stats

    def after_d(self, run: RunState, stats: Stats) -> None:
        assert self.objective is not None
        for d in ("d_a", "d_b"):
            self.objective.after_d_step(self.nets[d])

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "pool": {k: p.state_dict() for k, p in self.pools.items()}}

    def load_state_dict(self, state: dict[str, Any], meta: dict[str, Any]) -> None:
        super().load_state_dict(state, meta)
        for k, p in self.pools.items():
            p.load_state_dict(state["pool"][k], torch.zeros((), device=self.device))

    def write_samples(self, z: torch.Tensor, step: int, run_dir: Path, logger: Any) -> None:
        """Rows A | G_AB(A) | known B, then B | G_BA(B) | known A (training images of folder tasks)."""
        k = self.cfg.log.grid
        rows = []
        for held, domain, g in ((self.task.holdout_ab, self.task.domain_a, "g_ab"),
                                (self.task.holdout_ba, self.task.domain_b, "g_ba")):
            x = (held.inputs if held is not None else domain)[:k].to(self.device)
            rows += [to_float(x), run_eval(self.nets[g], to_float(x))]
            if held is not None:
                rows.append(to_float(held.targets[:k].to(self.device)))
        write_rows(rows, sample_path(run_dir, step), logger, step)


declare_roles("cyclegan", *TRANSLATION_ROLES)


@GAMES.register("cyclegan")
def prepare_cyclegan(cfg: Config, runtime: Runtime) -> CycleGAN:
    task = checked_task(cfg, UnpairedTask)
    c = task.shape[0]
    nets = {"g_ab": build_translator(cfg.model.generator, c, c), "g_ba": build_translator(cfg.model.generator, c, c),
            "d_a": build_patch_discriminator(cfg.model.discriminator, c),
            "d_b": build_patch_discriminator(cfg.model.discriminator, c)}
    sources = {"A": TensorSource(task.domain_a, torch.arange(len(task.domain_a))),
               "B": TensorSource(task.domain_b, torch.arange(len(task.domain_b)))}
    return translation_game(CycleGAN, cfg, runtime, task, nets, ("g_ab", "g_ba"), ("d_a", "d_b"), sources)
