"""GAN objectives: the one place where variants differ, penalties included. The training loop only
calls ``discriminator_loss``, ``after_d_step`` and ``generator_loss``; losses take D's raw outputs, so
D never ends in a sigmoid.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from gankit.config import ConfigError, ObjectiveConfig
from gankit.registry import Registry

Stats = dict[str, torch.Tensor]


def bce_logits(logits: torch.Tensor, target: float) -> torch.Tensor:
    """Binary cross-entropy against a constant target, stable for any logit."""
    if target == 1.0:
        return F.softplus(-logits).mean()
    if target == 0.0:
        return F.softplus(logits).mean()
    return (target * F.softplus(-logits) + (1 - target) * F.softplus(logits)).mean()


def split_aux(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(real/fake logits (N,), class logits (N, K) or None): an ACGAN D outputs both in one (N, 1 + K)."""
    if logits.dim() == 2:
        return logits[:, 0], logits[:, 1:]
    return logits, None


def aux_loss(class_logits: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    if y is None:
        raise ConfigError("config: a D with conditioning acgan classifies the real labels: set model.conditional: true")
    return F.cross_entropy(class_logits, y)


def input_gradients(outputs: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """d sum(outputs) / d inputs, flattened per sample, kept in the graph so a penalty can train D."""
    (grad,) = torch.autograd.grad(outputs.sum(), inputs, create_graph=True)
    return grad.flatten(1)


class Objective:
    """Base: instance noise, one-sided label smoothing and the R1 penalty; subclasses define the loss
    terms and any penalty of their own."""

    logistic_d = True  # D's outputs are log-odds, so sigmoid(D) is the probability of "real"
    # what d_real and d_fake mean, for plots: (d_real's name, d_fake's or None when it is 1 - d_real)
    output_labels: tuple[str, str | None] = ("D(x)", "D(G(z))")
    needs_real_in_g = False  # G's loss also looks at D(x) (relativistic objectives)

    track_sign = False  # set by an adaptive augmentation (ADA), which reads stats["ada_r"] of every D step
    gamma_scale = 1.0  # objective.gamma_final's schedule: the trainer sets it before every step

    def __init__(self, cfg: ObjectiveConfig) -> None:
        self.cfg = cfg
        if cfg.label_smoothing > 0 and not self.logistic_d:
            raise ConfigError(f"config: objective.label_smoothing applies to the logistic objectives "
                              f"(ns, minimax, rals, rpgan), not to {cfg.name}")

    # -- loss terms on D's outputs, overridden by each objective
    def d_terms(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def g_term(self, fake_logits: torch.Tensor, real_logits: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def d_stats(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> Stats:
        """Mean D(x) and D(G(z)) for logs and health checks: probabilities for logistic objectives."""
        if self.logistic_d:
            return {"d_real": torch.sigmoid(real_logits).mean(), "d_fake": torch.sigmoid(fake_logits).mean()}
        return {"d_real": real_logits.mean(), "d_fake": fake_logits.mean()}

    def penalty(self, d: nn.Module, real: torch.Tensor, fake: torch.Tensor, y: torch.Tensor | None,
                gen: torch.Generator | None) -> tuple[torch.Tensor | None, Stats]:
        """An objective's own regulariser of D (weighted), and its unweighted value for the logs."""
        return None, {}

    def after_d_step(self, d: nn.Module) -> None:
        """Called by the loop after every D update (weight clipping)."""

    # -- shared machinery
    def noise_std(self, step: int, total_steps: int) -> float:
        """Instance noise std, annealed linearly from ``instance_noise`` to 0."""
        if self.cfg.instance_noise <= 0:
            return 0.0
        horizon = self.cfg.instance_noise_steps or max(total_steps, 1)
        return self.cfg.instance_noise * max(0.0, 1.0 - step / horizon)

    @staticmethod
    def _perturb(x: torch.Tensor, std: float, gen: torch.Generator | None) -> torch.Tensor:
        if std <= 0:
            return x
        return x + std * torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)

    def discriminator_loss(self, d: nn.Module, real: torch.Tensor, fake: torch.Tensor,
                           y: torch.Tensor | None = None, noise_std: float = 0.0,
                           gen: torch.Generator | None = None, d_step: int = 0) -> tuple[torch.Tensor, Stats]:
        """D's loss with its penalties; ``d_step`` counts D updates from the start (lazy R1 / R2)."""
        lazy = d_step % self.cfg.r1_every == 0
        r1, r2 = lazy and self.cfg.r1_gamma > 0, lazy and self.cfg.r2_gamma > 0
        real_in = self._perturb(real, noise_std, gen)
        fake_in = self._perturb(fake, noise_std, gen)
        if r1:
            real_in = real_in.detach().requires_grad_(True)
        if r2:
            fake_in = fake_in.detach().requires_grad_(True)
        real_logits, real_classes = split_aux(d(real_in, y))
        fake_logits, fake_classes = split_aux(d(fake_in, y))
        loss = self.d_terms(real_logits, fake_logits)
        stats = {k: v.detach() for k, v in self.d_stats(real_logits, fake_logits).items()}
        if self.track_sign:  # ADA's overfitting measure, for any loss: how surely D ranks reals above fakes
            stats["ada_r"] = torch.sign(real_logits.detach().float() - fake_logits.detach().float()).mean()
        if real_classes is not None:  # ACGAN: D also learns to tell the class of real and fake images
            aux = aux_loss(real_classes, y) + aux_loss(fake_classes, y)
            loss = loss + self.cfg.aux_weight * aux
            stats["aux_d"] = aux.detach()
            stats["aux_acc_real"] = (real_classes.argmax(1) == y).float().mean().detach()
        extra, extra_stats = self.penalty(d, real, fake, y, gen)
        if extra is not None:
            loss = loss + extra
            stats.update(extra_stats)
        # Mescheder et al. 2018 (R1, and R2 on fakes as in R3GAN); lazy as in StyleGAN2: every N-th step,
        # N times the weight
        for name, on, logits, inputs, gamma in (("r1", r1, real_logits, real_in, self.cfg.r1_gamma),
                                                 ("r2", r2, fake_logits, fake_in, self.cfg.r2_gamma)):
            if on:
                value = input_gradients(logits, inputs).square().sum(1).mean()
                loss = loss + 0.5 * gamma * self.gamma_scale * self.cfg.r1_every * value
                stats[name] = value.detach()
        stats["loss_d"] = loss.detach()
        return loss, stats

    def generator_loss(self, d: nn.Module, fake: torch.Tensor, y: torch.Tensor | None = None,
                       noise_std: float = 0.0, gen: torch.Generator | None = None,
                       real: torch.Tensor | None = None) -> tuple[torch.Tensor, Stats]:
        """G's loss; ``real`` (a real batch with labels ``y``) is read only by relativistic objectives."""
        fake_logits, fake_classes = split_aux(d(self._perturb(fake, noise_std, gen), y))
        real_logits = None
        if self.needs_real_in_g:
            if real is None:
                raise ValueError(f"the {self.cfg.name} generator loss needs a real batch")
            real_logits, _ = split_aux(d(self._perturb(real, noise_std, gen), y))
        loss = self.g_term(fake_logits, real_logits)
        stats = {"loss_g": loss.detach()}
        if fake_classes is not None:  # ACGAN: G is rewarded for fakes D reads as their class
            aux = aux_loss(fake_classes, y)
            loss = loss + self.cfg.aux_weight * aux
            stats["aux_g"] = aux.detach()
        return loss, stats


OBJECTIVES: Registry[type[Objective]] = Registry("objective")


@OBJECTIVES.register("ns")
class NonSaturating(Objective):
    """Goodfellow et al.'s practical variant: G maximises log D(G(z)), strong gradients early on."""

    def d_terms(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        return bce_logits(real_logits, 1.0 - self.cfg.label_smoothing) + bce_logits(fake_logits, 0.0)

    def g_term(self, fake_logits: torch.Tensor, real_logits: torch.Tensor | None = None) -> torch.Tensor:
        return bce_logits(fake_logits, 1.0)


@OBJECTIVES.register("minimax")
class Minimax(NonSaturating):
    """The original saturating game: G minimises log(1 - D(G(z))); weak gradients when D wins."""

    def g_term(self, fake_logits: torch.Tensor, real_logits: torch.Tensor | None = None) -> torch.Tensor:
        return -bce_logits(fake_logits, 0.0)


class Critic(Objective):
    """Wasserstein critic (Arjovsky et al. 2017): D maximises E[D(x)] - E[D(G(z))], G maximises E[D(G(z))].
    The critic must be kept Lipschitz, by clipping (``wgan``) or a gradient penalty (``wgan-gp``)."""

    logistic_d = False

    def d_terms(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        return fake_logits.mean() - real_logits.mean()

    def g_term(self, fake_logits: torch.Tensor, real_logits: torch.Tensor | None = None) -> torch.Tensor:
        return -fake_logits.mean()


@OBJECTIVES.register("wgan")
class WGAN(Critic):
    """Weight clipping to [-clip, clip] after every D step; the paper uses RMSprop 5e-5 and 5 D steps."""

    @torch.no_grad()
    def after_d_step(self, d: nn.Module) -> None:
        for p in d.parameters():
            p.clamp_(-self.cfg.clip, self.cfg.clip)


@OBJECTIVES.register("wgan-gp")
class WGANGP(Critic):
    """Gulrajani et al. 2017: lambda * E[(|grad D(x_hat)| - 1)^2] on random interpolates x_hat."""

    def penalty(self, d: nn.Module, real: torch.Tensor, fake: torch.Tensor, y: torch.Tensor | None,
                gen: torch.Generator | None) -> tuple[torch.Tensor | None, Stats]:
        if self.cfg.gp_weight == 0:
            return None, {}
        shape = (real.shape[0],) + (1,) * (real.dim() - 1)
        eps = torch.rand(shape, generator=gen, device=real.device, dtype=real.dtype)
        x_hat = torch.lerp(fake.detach(), real.detach(), eps).requires_grad_(True)
        norms = torch.linalg.vector_norm(input_gradients(split_aux(d(x_hat, y))[0], x_hat), dim=1)
        gp = (norms - 1).square().mean()
        return self.cfg.gp_weight * gp, {"gp": gp.detach()}


@OBJECTIVES.register("lsgan")
class LeastSquares(Objective):
    """Mao et al. 2017 with targets a = 0 (fake), b = 1 (real), c = 1 (what G wants D to say)."""

    logistic_d = False

    def d_terms(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        return 0.5 * ((real_logits - 1).square().mean() + fake_logits.square().mean())

    def g_term(self, fake_logits: torch.Tensor, real_logits: torch.Tensor | None = None) -> torch.Tensor:
        return 0.5 * (fake_logits - 1).square().mean()


@OBJECTIVES.register("hinge")
class Hinge(Objective):
    """The hinge loss of SNGAN / SAGAN / BigGAN: D only pushes outputs past +-1, G maximises D(G(z))."""

    logistic_d = False

    def d_terms(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()

    def g_term(self, fake_logits: torch.Tensor, real_logits: torch.Tensor | None = None) -> torch.Tensor:
        return -fake_logits.mean()


@OBJECTIVES.register("rals")
class RelativisticAverage(Objective):
    """RaSGAN (Jolicoeur-Martineau 2019): D judges whether x is more real than the average fake, and
    G's loss is symmetric, so G also learns from real data. Logistic on the relative logits."""

    needs_real_in_g = True

    @staticmethod
    def relative(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return real_logits - fake_logits.mean(), fake_logits - real_logits.mean()

    def d_terms(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        real_rel, fake_rel = self.relative(real_logits, fake_logits)
        return bce_logits(real_rel, 1.0 - self.cfg.label_smoothing) + bce_logits(fake_rel, 0.0)

    def g_term(self, fake_logits: torch.Tensor, real_logits: torch.Tensor | None = None) -> torch.Tensor:
        assert real_logits is not None
        real_rel, fake_rel = self.relative(real_logits, fake_logits)
        return bce_logits(fake_rel, 1.0) + bce_logits(real_rel, 0.0)

    output_labels = ("P(real > the average fake)", "P(fake > the average real)")

    def d_stats(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> Stats:
        """The relative probabilities: a real sample more real than the average fake, and vice versa."""
        real_rel, fake_rel = self.relative(real_logits, fake_logits)
        return {"d_real": torch.sigmoid(real_rel).mean(), "d_fake": torch.sigmoid(fake_rel).mean()}


@OBJECTIVES.register("rpgan")
class RelativisticPairing(Objective):
    """RpGAN (Jolicoeur-Martineau 2019; the loss of R3GAN, Huang et al. 2024): each real sample is paired
    with a fake one and D judges which of the two is more real. Its loss landscape has no mode-dropping
    local minima (Sun et al. 2020), so it suits mode-coverage benchmarks; pair it with R1 and R2."""

    needs_real_in_g = True
    output_labels = ("P(a real looks more real than its paired fake)", None)

    def d_terms(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        return bce_logits(real_logits - fake_logits, 1.0 - self.cfg.label_smoothing)

    def g_term(self, fake_logits: torch.Tensor, real_logits: torch.Tensor | None = None) -> torch.Tensor:
        assert real_logits is not None
        return bce_logits(fake_logits - real_logits, 1.0)

    def d_stats(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> Stats:
        """P(the real sample of a pair looks more real than its fake), and the converse."""
        p = torch.sigmoid(real_logits - fake_logits).mean()
        return {"d_real": p, "d_fake": 1 - p}


def build_objective(cfg: ObjectiveConfig) -> Objective:
    try:
        return OBJECTIVES.get(cfg.name)(cfg)
    except KeyError as exc:
        raise ConfigError(f"config: objective.name: {exc.args[0]}") from None
