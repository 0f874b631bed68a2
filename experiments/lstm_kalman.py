"""LSTM-Kalman filter on a noisy pendulum: state estimation from partial, noisy measurements.

Data (generated here; train / val / test from different seeds): a pendulum with large swings,
state ``x = (angle, angular velocity)``, semi-implicit Euler with step ``dt``,
``w_t = w_{t-1} - dt k sin(a_{t-1}) + noise``, ``a_t = a_{t-1} + dt w_t``; only the angle is
measured, ``y_t = a_t + N(0, obs_std^2)``. The velocity is never observed.

Methods, compared by the RMSE of the filtered state on the test set:

* ``linear_kf``: the best-fit linear-Gaussian model (maximum likelihood from the training
  states and observations: least squares for A, B, the residual covariances for Q, R), run
  through ``bayestorch.ssm.KalmanFilter``;
* ``lstm``: a plain LSTM regressor from ``y_1..y_t`` to ``x_t`` (mean by MSE, a variance head
  by Gaussian NLL for the band);
* ``particle_filter``: a bootstrap particle filter with the true model (the oracle);
* ``lstm_kf``: ``bayestorch.ssm.LSTMKalmanFilter`` (Coskun et al. 2017) trained end to end on
  the state MSE through the filter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from bayestorch.experiment import ExperimentConfig, RunContext
from bayestorch.experiment.plots import new_figure
from bayestorch.ssm import KalmanFilter, LSTMKalmanFilter, particle_filter


@dataclass
class DataConfig:
    num_train: int = 256
    num_val: int = 64
    num_test: int = 128
    num_steps: int = 80
    dt: float = 0.05
    stiffness: float = 9.81  # g / L
    process_std: float = 0.1  # on the angular velocity, per step
    obs_std: float = 0.2
    max_initial_angle: float = 2.6  # radians, uniform in [-max, max]
    initial_velocity_std: float = 0.5
    seeds: list[int] = field(default_factory=lambda: [1, 2, 3])  # train, val, test


@dataclass
class TrainConfig:
    iterations: int = 300
    batch_size: int = 32
    lr: float = 3.0e-3
    hidden_size: int = 32
    eval_every: int = 25
    checkpoint_every: int = 50


@dataclass
class Config(ExperimentConfig):
    experiment: str = "lstm_kalman"
    output_dir: str = "runs/lstm_kalman"
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    num_particles: int = 2000
    plot_index: int = 0  # the test sequence plotted


# --------------------------------------------------------------------------- data


def pendulum_step(x: torch.Tensor, cfg: DataConfig, noise: torch.Tensor) -> torch.Tensor:
    angle, velocity = x[..., 0], x[..., 1]
    velocity = velocity - cfg.dt * cfg.stiffness * torch.sin(angle) + cfg.process_std * noise
    return torch.stack([angle + cfg.dt * velocity, velocity], -1)


def simulate(num: int, cfg: DataConfig, seed: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """States ``(num, T + 1, 2)`` (``x_0..x_T``) and observations ``(num, T, 1)``."""
    g = torch.Generator().manual_seed(seed)
    angle = (2 * torch.rand(num, generator=g) - 1) * cfg.max_initial_angle
    velocity = cfg.initial_velocity_std * torch.randn(num, generator=g)
    x = torch.stack([angle, velocity], -1)
    states = [x]
    for _ in range(cfg.num_steps):
        x = pendulum_step(x, cfg, torch.randn(num, generator=g))
        states.append(x)
    states = torch.stack(states, 1)
    y = states[:, 1:, :1] + cfg.obs_std * torch.randn(num, cfg.num_steps, 1, generator=g)
    return states.to(device), y.to(device)


# --------------------------------------------------------------------------- baselines


def fit_linear_model(states: torch.Tensor, y: torch.Tensor) -> KalmanFilter:
    """Complete-data maximum likelihood of x_t = A x_{t-1} + B + w, y_t = H x_t + v (H = [1 0])."""
    prev = states[:, :-1].reshape(-1, 2).double()
    nxt = states[:, 1:].reshape(-1, 2).double()
    design = torch.cat([prev, torch.ones(len(prev), 1, dtype=prev.dtype)], 1)
    coef = torch.linalg.lstsq(design, nxt).solution  # (3, 2)
    A, B = coef[:2].T, coef[2]
    resid = nxt - design @ coef
    Q = resid.T @ resid / len(resid)
    H = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    obs_resid = y.reshape(-1, 1).double() - nxt @ H.T
    R = obs_resid.T @ obs_resid / len(obs_resid)
    x0 = states[:, 0].double()
    return KalmanFilter(A, H, Q, R, B, x0.mean(0), torch.cov(x0.T))


class LSTMRegressor(nn.Module):
    """Plain LSTM: y_1..y_t -> (mean, log-variance) of x_t."""

    def __init__(self, obs_dim: int, state_dim: int, hidden_size: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(obs_dim, hidden_size, num_layers=2, batch_first=True)
        self.head = nn.Linear(hidden_size, 2 * state_dim)

    def forward(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_var = self.head(self.lstm(y)[0]).chunk(2, -1)
        return mean, log_var


def lstm_loss(model: LSTMRegressor, y, x) -> torch.Tensor:
    mean, log_var = model(y)
    mse = (mean - x).square().mean()
    nll = 0.5 * (log_var + (mean.detach() - x).square() / log_var.exp()).mean()
    return mse + nll


def rmse(estimate: torch.Tensor, truth: torch.Tensor) -> dict[str, float]:
    err = (estimate - truth).square().mean(dim=(0, 1)).sqrt()
    total = (estimate - truth).square().mean().sqrt()
    return {"angle": err[0].item(), "velocity": err[1].item(), "state": total.item()}


# --------------------------------------------------------------------------- run


def run(cfg: Config, ctx: RunContext) -> None:
    d = cfg.data
    device = ctx.device
    train_x, train_y = simulate(d.num_train, d, d.seeds[0], device)
    val_x, val_y = simulate(d.num_val, d, d.seeds[1], device)
    test_x, test_y = simulate(d.num_test, d, d.seeds[2], device)

    # Networks: plain LSTM and LSTM-KF (measurement model H = [1 0] known), trained side by side.
    H = torch.tensor([[1.0, 0.0]])
    lstm = LSTMRegressor(1, 2, cfg.train.hidden_size).to(device)
    lstm_kf = LSTMKalmanFilter(2, 1, cfg.train.hidden_size, H=H).to(device)
    opt_lstm = torch.optim.Adam(lstm.parameters(), lr=cfg.train.lr)
    opt_kf = torch.optim.Adam(lstm_kf.parameters(), lr=cfg.train.lr)
    objects = {"lstm": lstm, "lstm_kf": lstm_kf, "opt_lstm": opt_lstm, "opt_kf": opt_kf}
    start, _ = ctx.restore(objects)
    bar = ctx.progress(
        range(start, cfg.train.iterations), initial=start, total=cfg.train.iterations, desc="train"
    )
    for it in bar:
        index = torch.randint(
            d.num_train,
            (cfg.train.batch_size,),
            generator=ctx.generator,
            device=ctx.generator.device,
        )
        index = index.to(device)
        x, y = train_x[index, 1:], train_y[index]
        loss_lstm = lstm_loss(lstm, y, x)
        opt_lstm.zero_grad(set_to_none=True)
        loss_lstm.backward()
        opt_lstm.step()
        loss_kf = (lstm_kf(y).means - x).square().mean()  # the paper's state MSE
        opt_kf.zero_grad(set_to_none=True)
        loss_kf.backward()
        nn.utils.clip_grad_norm_(lstm_kf.parameters(), 10.0)
        opt_kf.step()
        record = {"loss_lstm": loss_lstm.item(), "loss_lstm_kf": loss_kf.item()}
        if (it + 1) % cfg.train.eval_every == 0 or it + 1 == cfg.train.iterations:
            with torch.no_grad():
                record["val_rmse_lstm"] = rmse(lstm(val_y)[0], val_x[:, 1:])["state"]
                record["val_rmse_lstm_kf"] = rmse(lstm_kf(val_y).means, val_x[:, 1:])["state"]
        ctx.log(it + 1, **record)
        bar.set_postfix(lstm=f"{loss_lstm.item():.3f}", lstm_kf=f"{loss_kf.item():.3f}")
        if (it + 1) % cfg.train.checkpoint_every == 0 or it + 1 == cfg.train.iterations:
            ctx.save_checkpoint(it + 1, objects)

    # Evaluation on the test set: means and standard deviations of every method.
    truth = test_x[:, 1:]
    estimates: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    linear = fit_linear_model(train_x.cpu(), train_y.cpu()).to(device)
    with torch.no_grad():
        out = linear.filter(test_y.double())
        estimates["linear_kf"] = (out.means.float(), _sd(out.covs).float())
        mean, log_var = lstm(test_y)
        estimates["lstm"] = (mean, (0.5 * log_var).exp())
        out = lstm_kf(test_y)
        estimates["lstm_kf"] = (out.means, _sd(out.covs))
        pf = _oracle_particle_filter(test_y, d, cfg.num_particles, ctx.make_generator("pf"))
        estimates["particle_filter"] = (pf.means.float(), _sd(pf.covs).float())
    results = {}
    for name, (mean, sd) in estimates.items():
        scores = rmse(mean, truth)
        inside = ((mean - truth).abs() <= 1.645 * sd).float().mean().item()
        results[name] = {**scores, "coverage_90": inside}
    summary = {
        "test_rmse": results,
        "linear_model": {
            "A": linear.A.detach().cpu().tolist(),
            "Q": linear.Q.detach().cpu().tolist(),
            "R": linear.R.detach().cpu().tolist(),
        },
        "lstm_kf_beats_linear_kf": results["lstm_kf"]["state"] < results["linear_kf"]["state"],
        "lstm_kf_beats_lstm": results["lstm_kf"]["state"] < results["lstm"]["state"],
        "iterations": cfg.train.iterations,
        "num_test": d.num_test,
    }
    ctx.write_summary(summary)
    ctx.info(" | ".join(f"{k}: RMSE {v['state']:.3f}" for k, v in results.items()))
    plot(estimates, truth, test_y, cfg, ctx)


def _sd(covs: torch.Tensor) -> torch.Tensor:
    return covs.diagonal(dim1=-2, dim2=-1).clamp_min(0).sqrt()


def _oracle_particle_filter(y, d: DataConfig, num_particles: int, generator):
    """Bootstrap particle filter with the true pendulum model (float64, on y's device)."""
    y = y.double()
    y = y.cpu() if generator.device.type == "cpu" else y

    def init(shape, g):
        angle = 2 * torch.rand(*shape, generator=g, dtype=y.dtype, device=y.device) - 1
        velocity = torch.randn(*shape, generator=g, dtype=y.dtype, device=y.device)
        return torch.stack([angle * d.max_initial_angle, velocity * d.initial_velocity_std], -1)

    def transition(x, t, g):
        noise = torch.randn(x.shape[:-1], generator=g, dtype=x.dtype, device=x.device)
        return pendulum_step(x, d, noise)

    def log_prob(y_t, x, t):
        z = (y_t[:, None, 0] - x[..., 0]) / d.obs_std
        return -0.5 * z.square() - math.log(d.obs_std) - 0.5 * math.log(2 * math.pi)

    out = particle_filter(y, init, transition, log_prob, num_particles, generator=generator)
    return out._replace(means=out.means.to(y.device), covs=out.covs.to(y.device))


def plot(estimates, truth, y, cfg: Config, ctx: RunContext) -> None:
    i = cfg.plot_index
    steps = np.arange(1, truth.shape[1] + 1) * cfg.data.dt
    fig, axes = new_figure(2, 1, figsize=(10, 7), sharex=True)
    colors = {"linear_kf": "C1", "lstm": "C2", "particle_filter": "C3", "lstm_kf": "C0"}
    for k, (ax, label) in enumerate(
        zip(axes, ["angle (rad)", "angular velocity (rad/s)"], strict=True)
    ):
        ax.plot(steps, truth[i, :, k].cpu(), color="k", lw=2, label="truth")
        if k == 0:
            ax.plot(steps, y[i, :, 0].cpu(), ".", color="0.5", label="measurement")
        for name, (mean, sd) in estimates.items():
            m, s = mean[i, :, k].cpu().numpy(), sd[i, :, k].cpu().numpy()
            ax.plot(steps, m, color=colors[name], label=name)
            ax.fill_between(steps, m - 1.645 * s, m + 1.645 * s, color=colors[name], alpha=0.15)
        ax.set_ylabel(label)
    axes[0].legend(ncol=3, fontsize=8)
    axes[1].set_xlabel("time (s)")
    axes[0].set_title("test trajectory: estimates with 90% bands")
    ctx.save_figure(fig, "test_trajectory")

    records = ctx.read_metrics()
    fig, ax = new_figure(figsize=(6, 4))
    for key in ("val_rmse_lstm", "val_rmse_lstm_kf"):
        pts = [(r["step"], r[key]) for r in records if key in r]
        ax.plot(*zip(*pts, strict=True), "o-", label=key.removeprefix("val_rmse_"))
    ax.set_xlabel("iteration")
    ax.set_ylabel("validation state RMSE")
    ax.legend()
    ctx.save_figure(fig, "learning_curves")
