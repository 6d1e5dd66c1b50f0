"""Vectors for micro-rules: the endpoint's embeddings API when it has one, else TF-IDF reduced by SVD."""
from __future__ import annotations

import numpy as np
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import normalize

from rules.teacher.client import Teacher, TeacherError

TFIDF_SVD = "tfidf-svd"
# The paper used 768-d embeddings; a few hundred short rules carry far fewer independent directions.
SVD_COMPONENTS = 64
EMBED_BATCH = 64


def tfidf_svd(texts: list[str], *, n_components: int = SVD_COMPONENTS, random_state: int = 0) -> np.ndarray:
    """Return unit-length TF-IDF vectors reduced with TruncatedSVD (kept sparse-free for DBSCAN).

    Parameters
    ----------
    texts : list of str
        The documents, one per micro-rule.
    n_components : int
        Upper bound on the reduced dimension; small sets get at most ``n_samples - 1``.
    random_state : int
        Seed of the randomized SVD, so a rerun yields the same clusters.
    """
    matrix = None
    for stop_words in ("english", None):
        try:
            # Unigrams: on one-sentence rules, bigrams push paraphrases past eps 0.4 (measured 0.4-0.7 apart).
            matrix = TfidfVectorizer(sublinear_tf=True, stop_words=stop_words).fit_transform(texts)
            break
        except ValueError:  # nothing left after removing stop words (e.g. rules that are only digits)
            continue
    if matrix is None:
        return np.zeros((len(texts), 1))
    n_components = min(n_components, matrix.shape[0] - 1, matrix.shape[1] - 1)
    dense = (
        TruncatedSVD(n_components=n_components, random_state=random_state).fit_transform(matrix)
        if n_components >= 2
        else matrix.toarray()
    )
    return normalize(dense)


def embed_texts(
    texts: list[str], *, teacher: Teacher | None = None, method: str = "auto", random_state: int = 0
) -> tuple[np.ndarray, str]:
    """Return unit-length vectors for the texts and the name of the method that made them.

    ``method`` is "auto" (endpoint if it answers, else TF-IDF + SVD), "endpoint" or "tfidf-svd".
    """
    if method not in {"auto", "endpoint", TFIDF_SVD}:
        raise ValueError(f"Unknown embedding method {method!r}")
    if method != TFIDF_SVD and teacher is not None:
        try:
            vectors: list[list[float]] = []
            for start in range(0, len(texts), EMBED_BATCH):
                vectors.extend(teacher.embed(texts[start : start + EMBED_BATCH]))
            return normalize(np.asarray(vectors, dtype=float)), f"endpoint:{teacher.config.model}"
        except TeacherError:
            if method == "endpoint":
                raise
    return tfidf_svd(texts, random_state=random_state), TFIDF_SVD
