#!/usr/bin/python3
"""Reference 2-D PCAs made by numpy, for test/explore-embeddings.test.ts (pca2 in
src/engine/explore/embeddings.ts).

    /usr/bin/python3 scripts/make_pca_fixture.py      # writes test/fixtures/pca2.json

Independent of the engine's method: numpy's SVD of the centred matrix (LAPACK gesdd), not an
eigen-decomposition of X^T X or X X^T. For each case:

    X [n, D]      random (fixed seed), columns scaled so the variances fall off, plus an offset;
                  rounded to 6 decimals, and the rounded values are the data
    Xc = X - X.mean(0);  U, S, Vt = svd(Xc)
    coords        [n, 2] = U[:, :2] * S[:2]  (= Xc @ Vt[:2].T)
    explained     [2]    = S[:2]**2 / sum(S**2)
    extra         [m, D] further rows (not in the PCA), and extraCoords [m, 2] = (extra - mean) @ Vt[:2].T

Signs of singular vectors are arbitrary: the test compares each axis up to its sign. Cases cover
n > D (the engine decomposes the D x D covariance), n < D (the n x n Gram matrix), n = D, and a
near-tie of the two top variances. Deterministic: a re-run writes the same file.
"""

import json
import os

import numpy as np

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "fixtures", "pca2.json")


def case(rng, name, n, D, decay, m=3):
    scales = decay ** np.arange(D)
    X = rng.standard_normal((n, D)) * scales + rng.uniform(-2, 2, size=D)
    X = np.round(X, 6)
    Y = np.round(rng.standard_normal((m, D)) * scales + X.mean(0), 6)
    mean = X.mean(0)
    Xc = X - mean
    U, S, Vt = np.linalg.svd(Xc, full_matrices=False)
    coords = U[:, :2] * S[:2]
    # The same coordinates from the axes, as a check on the reference itself.
    assert np.allclose(coords, Xc @ Vt[:2].T, atol=1e-10)
    explained = S[:2] ** 2 / np.sum(S**2)
    return {
        "name": name,
        "n": n,
        "D": D,
        "X": X.ravel().tolist(),
        "coords": coords.ravel().tolist(),
        "explained": explained.tolist(),
        "singular": S[:3].tolist(),
        "extra": Y.ravel().tolist(),
        "extraCoords": ((Y - mean) @ Vt[:2].T).ravel().tolist(),
    }


def main():
    rng = np.random.default_rng(20240913)
    cases = [
        case(rng, "tall (n > D: covariance)", 40, 8, 0.8),
        case(rng, "wide (n < D: Gram)", 12, 30, 0.9),
        case(rng, "square", 16, 16, 0.85),
        # Near-equal top variances: the axes are still well defined (the gap is ~5%).
        case(rng, "close top variances", 50, 6, 0.97),
    ]
    doc = {
        "generator": "scripts/make_pca_fixture.py",
        "numpy": np.__version__,
        "method": "numpy.linalg.svd of the centred matrix; coords = U[:, :2] * S[:2]; explained = S[:2]^2 / sum(S^2); signs arbitrary",
        "cases": cases,
    }
    with open(OUT, "w") as f:
        json.dump(doc, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {os.path.normpath(OUT)} ({os.path.getsize(OUT)} bytes): " + ", ".join(f"{c['name']} {c['n']}x{c['D']}" for c in cases))


if __name__ == "__main__":
    main()
