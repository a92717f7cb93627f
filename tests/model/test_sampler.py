"""The table sampler: it draws the table's clusters and nothing between them, per seed, through an export."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from mp3net import generate as gen
from mp3net.artifacts import load_export, load_generator
from mp3net.config import preset
from mp3net.model import Generator
from mp3net.model.sampler import TABLE_NEIGHBOURS, TableSampler
from mp3net.train.checkpoint import export_generator

DIM = 16


def _clusters(n_clusters: int = 6, per: int = 40, spread: float = 0.1, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    centres = 4 * torch.randn(n_clusters, DIM, generator=g)
    table = centres.repeat_interleave(per, 0) + spread * torch.randn(n_clusters * per, DIM, generator=g)
    return centres, table


def test_every_cluster_is_drawn_in_proportion_and_nothing_falls_between():
    centres, table = _clusters()
    s = TableSampler(DIM).fit(table)
    with torch.no_grad():
        z = s(torch.randn(6000, DIM, generator=torch.Generator().manual_seed(1)))
    d = torch.cdist(z, centres)
    nearest, which = d.min(1)
    share = torch.bincount(which, minlength=6).float() / len(z)
    assert torch.all((share - 1 / 6).abs() < 0.03), share
    apart = torch.cdist(centres, centres) + 1e9 * torch.eye(6)
    # every draw sits within its cluster's own radius (≈ 0.1·√16 = 0.4; the walk and jitter stay inside)
    assert float(nearest.max()) < 1.0 < 0.2 * float(apart.min())
    # and it is new: not one of the table's rows
    assert float(torch.cdist(z, table).min(1).values.median()) > 0.05


def test_a_draw_walks_from_a_row_towards_one_of_its_neighbours():
    _, table = _clusters(n_clusters=3, per=10)
    s = TableSampler(DIM).fit(table)
    assert s.neighbours.shape == (30, TABLE_NEIGHBOURS)
    d = torch.cdist(table, table) + 1e9 * torch.eye(30)
    assert torch.equal(s.neighbours[:, 0], d.argmin(1))
    z = torch.zeros(5, DIM)
    z[:, 0] = torch.tensor([-9.0, -0.5, 0.0, 0.5, 9.0])  # Φ: 0, .31, .5, .69, 1 → rows 0, 9, 15, 20, 29
    z[:, 2] = -9.0  # no walk; z[3:] = 0: no jitter
    rows = torch.tensor([0, 9, 15, 20, 29])
    assert torch.equal(s(z), table[rows])
    z[:, 2] = 9.0  # the whole reach: the midpoint with the neighbour Φ(z₁ = 0) = ½ picks
    j = s.neighbours[rows, TABLE_NEIGHBOURS // 2]
    torch.testing.assert_close(s(z), table[rows] + s.reach * (table[j] - table[rows]))


def test_same_noise_same_latent_and_an_empty_sampler_refuses():
    _, table = _clusters()
    s = TableSampler(DIM).fit(table)
    z = torch.randn(8, 3, DIM)  # any leading shape
    assert s(z).shape == (8, 3, DIM) and torch.equal(s(z), s(z.clone()))
    with pytest.raises(RuntimeError, match="holds no table"):
        TableSampler(DIM)(z)
    with pytest.raises(ValueError, match="at least 2 latents"):
        TableSampler(DIM).fit(table[:1])


def _exported(folder, successor=None):
    """A small generator with a table sampler of 32 latents (and their ``successor`` rows), and its export."""
    cfg = preset("laptop").override(
        ["model.max_channels=16", "model.min_channels=0", "model.band_norm=false"]
    )
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, sampler="table"))
    torch.manual_seed(0)
    G = Generator(cfg.model).eval()
    G.sampler.fit(torch.randn(32, cfg.model.latent_dim), successor=successor)
    export_generator(folder / "export", cfg, G.state_dict(), step=1)
    return G, folder / "export"


@pytest.fixture(scope="module")
def table_model(tmp_path_factory):
    """A table without runs: no clip follows another."""
    return _exported(tmp_path_factory.mktemp("m"))


def test_the_sampler_survives_export_and_reload(table_model):
    G, out = table_model
    cfg, weights = load_export(out)
    assert cfg.model.sampler == "table" and weights["sampler.neighbours"].dtype == torch.long
    H, _ = load_generator(out)
    z = torch.randn(3, G.cfg.latent_dim)
    with torch.no_grad():
        assert torch.equal(H.latents(z), G.latents(z))
        torch.testing.assert_close(H(z), G(z), rtol=0, atol=0)
    a, _ = gen.generate(out, [5, 6], precision="fp32")
    b, _ = gen.generate(out, [5, 6], precision="fp32")
    assert torch.equal(a, b) and not torch.equal(a[0], a[1])


def test_long_tracks_and_interpolations_blend_the_sampled_latents(table_model):
    G, _ = table_model
    anchors = gen.seed_anchor_sets(G, [4], 3)[0]  # [3, D]: the seed's noise through the sampler
    with torch.no_grad():
        assert torch.equal(anchors, G.latents(gen.seed_latents(4, 3, G.cfg.latent_dim)))
    path = gen.latent_path(anchors, 3, G.cfg.start_frames, linear=True)
    mid = path[G.cfg.start_frames - 1 : G.cfg.start_frames + 1].mean(0)  # between anchors 0 and 1
    torch.testing.assert_close(mid, anchors[:2].mean(0))
    sets = gen.interpolation_anchor_sets(G, 1, 2, 3, positions=1)
    a, b = gen.seed_anchor_sets(G, [1, 2], 1)
    assert torch.equal(sets[0], a) and torch.equal(sets[2], b)
    torch.testing.assert_close(sets[1], (a + b) / 2)


def test_truncation_narrows_the_jitter_and_keeps_every_row_drawable(table_model):
    G, _ = table_model
    dim, n = G.cfg.latent_dim, G.sampler.table.shape[0]
    plain = torch.cat([gen.seed_latents(s, 1, dim) for s in range(200)])
    tight = torch.cat([gen.seed_latents(s, 1, dim, truncation=0.5, keep=3) for s in range(200)])
    assert torch.equal(plain[:, :3], tight[:, :3]) and tight[:, 3:].abs().max() <= 0.5
    rows = (torch.special.ndtr(tight[:, 0]) * n).long()
    assert int(rows.min()) == 0 and int(rows.max()) == n - 1  # both ends of the table stay drawable
    drawn = torch.cat(gen.seed_anchor_sets(G, range(200), 1, truncation=0.5))
    with torch.no_grad():
        assert torch.equal(drawn, G.latents(tight))  # generation keeps the sampler's choices
        near = torch.cdist(drawn, G.sampler.table).min(1).values.mean()
        assert near < torch.cdist(G.latents(plain), G.sampler.table).min(1).values.mean()


# ---- the walk: latent sequences ----------------------------------------------------------------------


def _cycle_table(runs: int = 6, length: int = 3, seed: int = 0):
    """Clusters A, B, C; ``runs`` recordings each A → B → C (then the next run starts at A): table rows in
    runs, each row a noisy copy of its cluster's centre. Returns (centres, table, successor, cluster)."""
    g = torch.Generator().manual_seed(seed)
    centres = 4 * torch.randn(3, DIM, generator=g)
    cluster = torch.arange(length).repeat(runs)
    table = centres[cluster] + 0.1 * torch.randn(len(cluster), DIM, generator=g)
    successor = torch.arange(1, len(cluster) + 1)
    successor[length - 1 :: length] = -1  # a run's last clip has none
    return centres, table, successor, cluster


def test_the_walk_visits_a_cycle_in_its_order():
    centres, table, successor, _ = _cycle_table()
    s = TableSampler(DIM).fit(table, successor=successor)
    assert s.walks
    z = torch.randn(20, 30, DIM, generator=torch.Generator().manual_seed(2))
    rows = s.walk_rows(z)  # [20, 30]
    visited = torch.cdist(s.walk(z), centres).argmin(-1)  # the cluster of every step
    # inside a run the walk takes A → B → C; after C it leaves for any clip (no C → ? in the data)
    step = visited[:, 1:] - visited[:, :-1]
    from_a_or_b = visited[:, :-1] < 2
    assert torch.all(step[from_a_or_b] == 1), visited
    # it follows its own run about half the time (WALK_FOLLOW) and a neighbour's otherwise
    own = rows[:, 1:] == successor[rows[:, :-1]]
    share = float(own[from_a_or_b].float().mean())
    assert 0.35 < share < 0.75, share
    # same noise, same walk; other noise, another walk
    assert torch.equal(s.walk(z), s.walk(z.clone()))
    assert not torch.equal(rows, s.walk_rows(torch.randn(20, 30, DIM)))


def test_a_table_without_runs_cannot_walk_and_old_exports_load_without_successors(table_model):
    G, out = table_model
    assert not G.sampler.walks and torch.all(G.sampler.successor == -1)
    state = {k: v for k, v in G.state_dict().items() if k not in ("sampler.successor", "sampler.follow")}
    H = Generator(G.cfg)
    H.load_state_dict(state)  # an export written before walks
    assert not H.sampler.walks and H.sampler.successor.shape == (32,)
    assert not gen.walks(H) and not gen.walks(H, "independent")
    with pytest.raises(gen.MP3NetError, match="cannot walk"):
        gen.walks(H, "walk")
    with pytest.raises(gen.MP3NetError, match="unknown sequence"):
        gen.walks(H, "shuffle")
    with pytest.raises(ValueError, match="successor"):
        TableSampler(DIM).fit(torch.randn(4, DIM), successor=torch.tensor([1, 2, 3, 4]))


@pytest.fixture(scope="module")
def walking_model(tmp_path_factory):
    """The same network with a table of 8 runs of 4 clips."""
    successor = torch.tensor([i + 1 if i % 4 != 3 else -1 for i in range(32)])
    return _exported(tmp_path_factory.mktemp("w"), successor)


def test_long_tracks_walk_by_default_and_hold_each_clips_latent(walking_model):
    G, out = walking_model
    H, _ = load_generator(out)
    assert gen.walks(H) and torch.equal(H.sampler.successor, G.sampler.successor)
    anchors = gen.seed_anchor_sets(H, [3], 5, walk=True)[0]  # [5, D]
    with torch.no_grad():
        z = gen.seed_latents(3, 5, G.cfg.latent_dim)
        assert torch.equal(anchors, G.sampler.walk(z))
    f = G.cfg.start_frames
    held = gen.latent_path(anchors, 5, f, hold=True)
    assert torch.equal(held, anchors.repeat_interleave(f, 0))  # each clip's frames: its own latent
    assert torch.equal(gen.latent_path(anchors, 5, f, 3, 7, hold=True), held[3:7])
    seconds = 4 * G.cfg.clip_samples / G.cfg.sample_rate
    a, _ = gen.generate(out, [1, 2], duration=seconds, precision="fp32")
    b, _ = gen.generate(out, [1, 2], duration=seconds, precision="fp32", sequence="walk")
    c, _ = gen.generate(out, [1, 2], duration=seconds, precision="fp32", sequence="independent")
    assert torch.equal(a, b) and not torch.equal(a, c)  # auto walks; independent is the old track
    # one clip is the same track either way: the walk starts where a single draw does
    one, _ = gen.generate(out, [1], precision="fp32", sequence="walk")
    alone, _ = gen.generate(out, [1], precision="fp32", sequence="independent")
    torch.testing.assert_close(one, alone, rtol=0, atol=1e-6)
