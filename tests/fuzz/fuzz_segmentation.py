"""Fuzz cases of bayestorch.segmentation."""

from __future__ import annotations

import torch
from fuzzlib import case, exempt
from hypothesis import strategies as st

import bayestorch as bt

S = bt.segmentation

exempt("namedtuple", "per-sweep diagnostics of GeneralisedSwendsenWang", "segmentation.GSWInfo")
exempt("namedtuple", "the state of GeneralisedSwendsenWang", "segmentation.GSWState")
exempt(
    "namedtuple",
    "per-sweep diagnostics of SwendsenWangSegmentation",
    "segmentation.SegmentationInfo",
)
exempt("namedtuple", "the state of SwendsenWangSegmentation", "segmentation.SegmentationState")


def _image(f):
    h, w = f.size(1, 3), f.size(1, 3)
    channels = f.draw(st.sampled_from([(), (1,), (2,)]))
    return h, w, f.rand(h, w, *channels)


@case("segmentation.GeneralisedSwendsenWang", examples=0.5)
def _(f):
    h, w, image = _image(f)
    prior = f.draw(st.sampled_from(["dp", "pitman_yor", "finite"]))
    kwargs = {
        "dp": {"alpha": 1.0},
        "pitman_yor": {"alpha": 1.0, "discount": 0.3},
        "finite": {"num_labels": 3},
    }[prior]
    kernel = S.GeneralisedSwendsenWang(
        f.arg("image", image, shape_fuzz=("extra",)),
        f.arg("partition_prior", prior),
        beta=f.arg("beta", 0.8),
        **{k: f.arg(k, v) for k, v in kwargs.items()},
    )
    r = f.size(1, 2)
    state = kernel.init(replicas=f.arg("replicas", r), generator=f.generator())
    state, info = kernel.step(state, f.generator())
    return f.expect(state.labels, (r, h * w)), info


@case("segmentation.SwendsenWangSegmentation", examples=0.5)
def _(f):
    h, w = f.size(1, 3), f.size(2, 3)  # >= 2 nodes (the default prior_scale is a variance)
    d, q = f.size(1, 2), f.size(2, 3)
    data = f.randn(h * w, d)
    edges = bt.mcmc.lattice_edges(h, w)
    model = S.SwendsenWangSegmentation(
        f.arg("data", data, shape_fuzz=("fewer",)),
        f.arg("edges", edges),
        f.arg("beta", 0.7, aliases=("couplings",)),  # the Potts couplings
        f.arg("num_states", q),
        method=f.arg("method", f.draw(st.sampled_from(["sw", "gibbs"]))),
    )
    r = f.size(1, 2)
    labels = torch.randint(0, q, (r, h * w), generator=f.generator())
    state = model.init(f.arg("labels", labels), f.generator())
    state, info = model.step(state, f.generator())
    return f.expect(state.labels, (r, h * w)), info


@case("segmentation.GibbsPartitionPrior")
def _(f):
    kind = f.draw(st.sampled_from(["dp", "pitman_yor", "finite"]))
    kwargs = {
        "dp": {"alpha": 1.5},
        "pitman_yor": {"alpha": 1.0, "discount": 0.4},
        "finite": {"num_labels": 4, "dirichlet": 1.0},
    }[kind]
    prior = S.GibbsPartitionPrior(
        f.arg("kind", kind), **{k: f.arg(k, v) for k, v in kwargs.items()}
    )
    r, slots = f.size(1, 3), f.size(1, 4)
    sizes = torch.randint(0, 4, (r, slots), generator=f.generator())
    sizes[:, 0] += 1
    return f.expect(prior.log_eppf(f.arg("sizes", sizes)), (r,))


@case("segmentation.set_partitions")
def _(f):
    n = f.size(0, 5)
    out = S.set_partitions(f.arg("n", n))
    assert out.shape[-1] == n
    return out


@case("segmentation.NormalInverseGamma", "segmentation.NormalInverseWishart")
def _(f):
    c = f.size(1, 3)
    if f.draw(st.booleans()):
        stats = S.NormalInverseGamma(
            f.arg("mean", 0.0), f.arg("kappa", 0.1), f.arg("shape", 2.0), f.arg("rate", 0.5)
        )
    else:
        stats = S.NormalInverseWishart(
            f.arg("dim", c), f.arg("mean", 0.0), f.arg("kappa", 0.1), scale=f.arg("scale", 0.5)
        )
    m = f.size(1, 5)
    y = f.arg("y", f.randn(m, c, dtype=torch.float64))
    return f.expect(stats.log_marginal_data(y), ())


def _labels(f, batch=()):
    n = f.size(1, 6)
    k = f.size(1, 3)
    a = torch.randint(0, k, (*batch, n), generator=f.generator())
    b = torch.randint(0, k, (*batch, n), generator=f.generator())
    return n, a, b


def _pair(fn):
    def run(f):
        batch = f.shape(max_dims=1, hi=2)
        n, a, b = _labels(f, batch)
        out = fn(f.arg("a", a, shape_fuzz=("last",)), f.arg("b", b, shape_fuzz=("last",)))
        return f.expect(out, batch)

    return run


for _name in ("adjusted_rand_index", "binder_loss", "variation_of_information"):
    case(f"segmentation.{_name}")(_pair(getattr(S, _name)))


@case("segmentation.coclustering")
def _(f):
    draws, n = f.size(1, 4), f.size(1, 5)
    samples = torch.randint(0, 3, (draws, n), generator=f.generator())
    return f.expect(S.coclustering(f.arg("samples", samples)), (n, n))


@case("segmentation.partition_point_estimate")
def _(f):
    draws, n = f.size(1, 4), f.size(1, 5)
    samples = torch.randint(0, 3, (draws, n), generator=f.generator())
    best, risk = S.partition_point_estimate(
        f.arg("samples", samples), loss=f.arg("loss", f.draw(st.sampled_from(["vi", "binder"])))
    )
    return f.expect(best, (n,)), risk
