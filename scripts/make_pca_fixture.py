#!/usr/bin/env python3
"""Write tests/fixtures/science_pca.json: an independent PCA reference for src/science/pca.rs.

A 12x40 matrix (fixed seed) stands in for 12 role vectors of dimension 40. The values are
float32 (what the Rust code consumes) written as exact decimals, and numpy computes the PCA
in float64 by the textbook route the Rust code does *not* use: the thin SVD of the
column-centred matrix, Xc = U S Vt. Rows of Vt are the components, S the singular values,
S^2/(n-1) the explained variance (numpy/sklearn convention), S^2/sum(S^2) its ratio, and
U*S the row coordinates. The columns are scaled unequally so the spectrum has distinct,
well-separated leading values (a plain Gaussian matrix has near-ties that make components
ill-defined). Run: python3 scripts/make_pca_fixture.py
"""
import json
import pathlib

import numpy as np

N_ROWS, N_COLS, SEED = 12, 40, 20260115


def main() -> None:
    rng = np.random.default_rng(SEED)
    scale = np.linspace(3.0, 0.2, N_COLS)
    x = (rng.standard_normal((N_ROWS, N_COLS)) * scale + 0.5).astype(np.float32)
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=0)
    xc = x64 - mean
    u, s, vt = np.linalg.svd(xc, full_matrices=False)
    # Centring removes one dimension: only n-1 components carry variance.
    k = N_ROWS - 1
    u, s, vt = u[:, :k], s[:k], vt[:k]
    var = s**2 / (N_ROWS - 1)
    out = {
        "generator": "scripts/make_pca_fixture.py",
        "numpy": np.__version__,
        "seed": SEED,
        "n_rows": N_ROWS,
        "n_cols": N_COLS,
        # float32 values printed with enough digits to round-trip exactly.
        "x": [float(v) for v in x.ravel()],
        "mean": mean.tolist(),
        "singular_values": s.tolist(),
        "explained_variance": var.tolist(),
        "explained_variance_ratio": (s**2 / np.sum(s**2)).tolist(),
        "components": vt.ravel().tolist(),
        "scores": (u * s).ravel().tolist(),
    }
    path = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "science_pca.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {path} ({path.stat().st_size} bytes); singular values {np.round(s, 4)}")


if __name__ == "__main__":
    main()
