"""Seed 004's DCGAN lab exactly as the tutorial writes it, in plain PyTorch: the yardstick for
configs/seeds/seed004_dcgan_mnist.yaml and the "plain loop" of benchmarks/contention.py.

The tutorial's TODOs are filled in as its text says (layer by layer); the only changes are the data
(the 10,000 bundled digits instead of a download), a wall-clock budget instead of 30 epochs, and no
TensorBoard writer. At the end it writes 10,000 samples for `gankit eval`:

    python benchmarks/seed004_tutorial.py --seconds 300 --out benchmarks/out/seed004_tutorial.npz
    gankit eval benchmarks/out/seed004_tutorial.npz --metrics fid,classes

``--train-mode-samples`` draws them as the tutorial draws its grids (G in training mode: BatchNorm
batch statistics, batches of 64); by default G is in eval mode, as gankit samples.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

from gankit.data.bundled import load_mnist10k_arrays


class Generator(nn.Module):
    def __init__(self, input_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(input_dim, 1024)
        self.br1 = nn.Sequential(nn.BatchNorm1d(1024), nn.ReLU())
        self.fc2 = nn.Linear(1024, 128 * 7 * 7)
        self.br2 = nn.Sequential(nn.BatchNorm1d(128 * 7 * 7), nn.ReLU())
        self.conv1 = nn.Sequential(nn.ConvTranspose2d(128, 64, 4, stride=2, padding=1), nn.BatchNorm2d(64), nn.ReLU())
        self.conv2 = nn.Sequential(nn.ConvTranspose2d(64, 1, 4, stride=2, padding=1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.br1(self.fc1(x))
        x = self.br2(self.fc2(x))
        x = x.reshape(-1, 128, 7, 7)
        return self.conv2(self.conv1(x))


class Discriminator(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(1, 32, 5, stride=1), nn.LeakyReLU(0.1))
        self.pl1 = nn.MaxPool2d(2, stride=2)
        self.conv2 = nn.Sequential(nn.Conv2d(32, 64, 5, stride=1), nn.LeakyReLU(0.1))
        self.pl2 = nn.MaxPool2d(2, stride=2)
        self.fc1 = nn.Sequential(nn.Linear(64 * 4 * 4, 1024), nn.LeakyReLU(0.1))
        self.fc2 = nn.Sequential(nn.Linear(1024, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pl1(self.conv1(x))
        x = self.pl2(self.conv2(x))
        x = x.view(x.shape[0], -1)
        return self.fc2(self.fc1(x))


def train_discriminator(real_images, D, G, loss_func, optim_D, batch_size, input_dim, device):
    real_images = real_images.to(device)
    real_labels = torch.ones(real_images.size(0), 1, device=device)
    fake_labels = torch.zeros(batch_size, 1, device=device)
    loss_real = loss_func(D(real_images), real_labels)
    fake_images = G(torch.randn(batch_size, input_dim, device=device))
    loss_fake = loss_func(D(fake_images.detach()), fake_labels)
    loss_D = loss_real + loss_fake
    optim_D.zero_grad()
    loss_D.backward()
    optim_D.step()
    return loss_D.item()


def train_generator(D, G, loss_func, optim_G, batch_size, input_dim, device):
    fake_images = G(torch.randn(batch_size, input_dim, device=device))
    loss_G = loss_func(D(fake_images), torch.ones(batch_size, 1, device=device))
    optim_G.zero_grad()
    loss_G.backward()
    optim_G.step()
    return loss_G.item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=300.0, help="wall-clock training budget (default 300)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: PyTorch's)")
    parser.add_argument("--seed", type=int, default=0, help="torch.manual_seed (default 0)")
    parser.add_argument("--num", type=int, default=10_000, help="samples written to --out (default 10000)")
    parser.add_argument("--out", default=None, help=".npz of uint8 `images` N x 28 x 28 x 1 for gankit eval")
    parser.add_argument("--train-mode-samples", action="store_true",
                        help="sample with G in training mode, as the tutorial's grids (default: eval mode)")
    parser.add_argument("--json", default=None, help="write steps and steps/s here")
    args = parser.parse_args()
    t0 = time.perf_counter()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    input_dim, batch_size = 100, 128
    images, labels = load_mnist10k_arrays()
    x = torch.from_numpy(images).float().div(255).unsqueeze(1)  # transforms.ToTensor()
    train_loader = DataLoader(TensorDataset(x, torch.from_numpy(labels)), batch_size=batch_size, shuffle=True)
    G, D = Generator(input_dim).to(device), Discriminator().to(device)
    optim_G = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    optim_D = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    loss_func = nn.BCELoss()
    steps, t_train = 0, time.perf_counter()
    done = False
    while not done:
        for real_images, _ in train_loader:
            train_discriminator(real_images, D, G, loss_func, optim_D, batch_size, input_dim, device)
            train_generator(D, G, loss_func, optim_G, batch_size, input_dim, device)
            steps += 1
            if time.perf_counter() - t0 >= args.seconds:
                done = True
                break
    train_s = time.perf_counter() - t_train
    result = {"steps": steps, "train_seconds": round(train_s, 2), "steps_per_s": round(steps / train_s, 3),
              "threads": torch.get_num_threads()}
    print(json.dumps(result))
    if args.out:
        G.train(args.train_mode_samples)
        gen = torch.Generator().manual_seed(12345)
        chunks = []
        with torch.no_grad():
            for start in range(0, args.num, 64):
                z = torch.randn(min(64, args.num - start), input_dim, generator=gen)
                chunks.append(G(z.to(device)).cpu())
        out = torch.cat(chunks).mul(255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
        np.savez_compressed(args.out, images=out)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh)


if __name__ == "__main__":
    main()
