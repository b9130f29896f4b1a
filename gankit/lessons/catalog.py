"""The lessons, declared as data: a question from one of the tutorials, the runs that answer it (each a preset
with dotted overrides, as ``gankit train PRESET --set ...`` takes them), the budget and what is measured.
Nothing here says what the answer is: the report reads it from the measured figures."""
from __future__ import annotations

from dataclasses import dataclass, field

from gankit.registry import unknown_name_message


@dataclass(frozen=True)
class Run:
    """One arm of a lesson: ``gankit train base --set *overrides`` (plus the lesson's seed and budget)."""

    label: str  # what the report calls it
    base: str  # a preset name, as `gankit train` takes it
    overrides: tuple[str, ...] = ()


@dataclass(frozen=True)
class Lesson:
    """A small declared experiment. ``runs``: key -> Run, the first the baseline every other run is read
    against. ``minutes``: the default budget of the whole lesson (training and measuring, one CPU core);
    ``measures``: names of :data:`gankit.lessons.measures.MEASURES`, the first the headline;
    ``settings``: overrides every run gets (in its command too); ``early_steps``: the window of the
    ``*_early`` measures; ``playground``: run key -> the page settings of a ready 2D game
    (`gankit lesson NAME --play KEY`)."""

    name: str
    title: str
    question: str
    tutorial: str
    runs: dict[str, Run]
    measures: tuple[str, ...]
    data: str = "digits"  # digits: FID and classes against mnist10k; ring: the PacGAN modes
    minutes: float = 10.0
    seeds: int = 2
    settings: tuple[str, ...] = ()
    early_steps: int = 100
    curves: tuple[str, ...] = ("loss_d", "loss_g")
    playground: dict[str, dict] = field(default_factory=dict)


LESSONS: dict[str, Lesson] = {}  # in the order `gankit lesson --list` shows them


def declare(lesson: Lesson) -> Lesson:
    if lesson.name in LESSONS:
        raise ValueError(f"lesson {lesson.name!r} is already declared")
    LESSONS[lesson.name] = lesson
    return lesson


def get_lesson(name: str) -> Lesson:
    """The lesson ``name``; an unknown name is a ValueError that suggests the closest."""
    if name not in LESSONS:
        raise ValueError(unknown_name_message("lesson", name, list(LESSONS)) + "; `gankit lesson --list` shows them")
    return LESSONS[name]


SEED004 = "seeds/seed004_dcgan_mnist"
SEED000 = "seeds/seed000_mlp_mnist"

declare(Lesson(
    name="dcgan-vs-mlp",
    title="DCGAN against the fully connected GAN",
    question="Tutorial 004 asks how DCGAN differs from the standard GAN and why it suits images better. "
             "At the same wall-clock budget on a CPU, which draws better digits: tutorial 000's fully connected "
             "GAN or tutorial 004's DCGAN?",
    tutorial="004 (DCGAN on MNIST), question 1; the MLP GAN of tutorial 000",
    runs={"mlp": Run("MLP GAN (tutorial 000)", SEED000),
          "dcgan": Run("DCGAN (tutorial 004)", SEED004)},
    measures=("fid", "classes_present", "class_kl", "steps"),
    settings=("log.every=10",),
))

declare(Lesson(
    name="structures",
    title="G and D structures of DCGAN",
    question="Tutorial 004 asks which structures its generator and discriminator use and how they shape the "
             "results. Starting from its networks as written (transposed convolutions in G, max-pooling and "
             "LeakyReLU in D), what changes when G upsamples and then convolves, when D downsamples with "
             "strided convolutions, or when D's LeakyReLU becomes a ReLU?",
    tutorial="004 (DCGAN on MNIST), question 2",
    runs={"written": Run("as written (transposed conv, max-pool, LeakyReLU)", SEED004),
          "upsample": Run("G: upsample + conv", SEED004, ("model.generator.upsample=nearest",)),
          "strided": Run("D: strided conv", SEED004, ("model.discriminator.downsample=stride",)),
          "relu": Run("D: ReLU", SEED004, ("model.discriminator.slope=0.0",))},
    measures=("fid", "classes_present", "steps", "loss_d_final"),
    settings=("log.every=5",),
))

declare(Lesson(
    name="batchnorm",
    title="BatchNorm in G and in D",
    question="Tutorial 004 asks why DCGAN uses batch normalisation and how it affects training. Its G normalises "
             "every layer and its D none: what happens to quality, losses and gradient norms when G loses its "
             "BatchNorm, or when D gets one too?",
    tutorial="004 (DCGAN on MNIST), question 3",
    runs={"written": Run("as written (BN in G, none in D)", SEED004),
          "g_off": Run("no BN in G", SEED004, ("model.generator.norm=none",)),
          "d_on": Run("BN in D too", SEED004, ("model.discriminator.norm=batch",))},
    measures=("fid", "classes_present", "grad_norm_g_early", "grad_norm_d_early", "grad_norm_g", "grad_norm_d",
              "steps"),
    settings=("log.every=5", "log.grad_norms=true"),
    early_steps=50,
    curves=("loss_d", "loss_g", "grad_norm_d", "grad_norm_g"),
))

declare(Lesson(
    name="mode-collapse-ring",
    title="Mode collapse on the 2D ring, and its remedies",
    question="A GAN that covers a few modes of the data well can fool its D without drawing the rest (mode "
             "collapse). On 8 Gaussians on a ring, without any remedy, how many modes does G keep, and what do "
             "one-sided label smoothing, instance noise, PacGAN packing, minibatch standard deviation and the R1 "
             "penalty change?",
    tutorial="000 (the GAN basics: mode collapse and training instability); the 2D ring of the PacGAN paper",
    runs={"plain": Run("no remedy", "ring", ("objective.r1_gamma=0.0",)),
          "smoothing": Run("label smoothing 0.1", "ring", ("objective.r1_gamma=0.0", "objective.label_smoothing=0.1")),
          "noise": Run("instance noise 0.1", "ring", ("objective.r1_gamma=0.0", "objective.instance_noise=0.1")),
          "pack": Run("packing 2", "ring", ("objective.r1_gamma=0.0", "model.pack=2")),
          "mbstd": Run("minibatch std", "ring", ("objective.r1_gamma=0.0", "model.discriminator.minibatch_std=true")),
          "r1": Run("R1 0.1 (the preset)", "ring")},
    measures=("modes", "high_quality", "reverse_kl", "steps"),
    data="ring",
    seeds=3,
    settings=("log.every=100",),
    playground={"plain": {"data.name": "ring", "objective.name": "ns", "objective.r1_gamma": 0.0, "train.d_steps": 1},
                "r1": {"data.name": "ring", "objective.name": "ns", "objective.r1_gamma": 0.1, "train.d_steps": 1}},
))

declare(Lesson(
    name="mode-collapse-digits",
    title="Mode collapse on the digits, and its remedies",
    question="Tutorial 000 names mode collapse as a GAN's main training problem. Its fully connected GAN on the "
             "digits: does it draw all ten classes evenly, and what do one-sided label smoothing, instance noise, "
             "packing, minibatch standard deviation and the R1 penalty change at the same budget?",
    tutorial="000 (the fully connected GAN on MNIST)",
    runs={"plain": Run("as written", SEED000),
          "smoothing": Run("label smoothing 0.1", SEED000, ("objective.label_smoothing=0.1",)),
          "noise": Run("instance noise 0.1", SEED000, ("objective.instance_noise=0.1",)),
          "pack": Run("packing 2", SEED000, ("model.pack=2",)),
          "mbstd": Run("minibatch std", SEED000, ("model.discriminator.minibatch_std=true",)),
          "r1": Run("R1 1.0", SEED000, ("objective.r1_gamma=1.0",))},
    measures=("fid", "classes_present", "class_kl", "steps"),
    settings=("log.every=25",),
))

declare(Lesson(
    name="minimax-and-k",
    title="Minimax against non-saturating loss, and k D steps",
    question="The original GAN paper trains D k times per G step and notes that early in training, when D rejects "
             "G's samples with confidence, log(1 - D(G(z))) saturates: G should maximise log D(G(z)) instead. "
             "Tutorial 001 trains with k = 4. How large is G's gradient early in training under each loss, and "
             "what do the loss and k change at the same budget?",
    tutorial="001 (the original GAN, reproduced; k = 4); the fully connected networks of tutorial 000 on the digits",
    runs={"ns_k1": Run("non-saturating, k = 1", SEED000),
          "minimax_k1": Run("minimax, k = 1", SEED000, ("objective.name=minimax",)),
          "ns_k4": Run("non-saturating, k = 4", SEED000, ("train.d_steps=4",)),
          "minimax_k4": Run("minimax, k = 4", SEED000, ("objective.name=minimax", "train.d_steps=4"))},
    measures=("grad_norm_g_early", "fid", "classes_present", "d_fake_early", "steps"),
    settings=("log.every=5", "log.grad_norms=true"),
    early_steps=100,
    curves=("loss_d", "loss_g", "grad_norm_g", "d_fake"),
    playground={"ns_k1": {"data.name": "ring", "objective.name": "ns", "objective.r1_gamma": 0.0, "train.d_steps": 1},
                "minimax_k1": {"data.name": "ring", "objective.name": "minimax", "objective.r1_gamma": 0.0,
                               "train.d_steps": 1},
                "ns_k4": {"data.name": "ring", "objective.name": "ns", "objective.r1_gamma": 0.0, "train.d_steps": 4},
                "minimax_k4": {"data.name": "ring", "objective.name": "minimax", "objective.r1_gamma": 0.0,
                               "train.d_steps": 4}},
))

declare(Lesson(
    name="families",
    title="The GAN family table as one experiment",
    question="Tutorial 003 lists the GAN family: DCGAN, WGAN, WGAN-GP, LSGAN, the hinge loss with spectral "
             "normalisation, the conditional GAN. Trained on the same digits for the same time, how do they "
             "compare in quality, in the classes they draw, and in how much they vary from seed to seed?",
    tutorial="003 (GAN from principle to practice: the family of variants)",
    runs={"dcgan": Run("DCGAN (ns)", "mnist_lsgan", ("objective.name=ns",)),
          "wgan": Run("WGAN", "mnist_wgan"),
          "wgan_gp": Run("WGAN-GP", "mnist_wgan_gp"),
          "lsgan": Run("LSGAN", "mnist_lsgan"),
          "hinge": Run("hinge + SN", "mnist_sngan"),
          "cgan": Run("CGAN", "mnist_cgan")},
    measures=("fid", "classes_present", "class_kl", "steps"),
    settings=("log.every=25",),
))
