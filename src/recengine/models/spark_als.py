"""``spark-als``: WALS's model, trained by Apache Spark MLlib's ALS (the ``spark`` extra).

It learns WALS's state (user and item factors over the same vocabularies, the row weights and
the grams of fold-in), so scoring, saving, loading, fold-in, explanations, approximate
retrieval and serving are :class:`~recengine.models.wals.WALS`'s own code; only ``_train``
differs: the pairs go to a Spark session (``master``, ``local[2]`` by default; an active
session on that master is reused) and MLlib solves them. pyspark is imported only then, so
loading and serving a ``spark-als`` model needs neither pyspark nor Java.

How WALS's settings map onto MLlib's (implicit feedback):

- **Confidence.** MLlib weighs an observed pair ``1 + alpha·r`` with preference 1 (Hu et al.)
  and every unobserved cell 1. It is given ``r' = (r / r̄)·C_i·R_u``, the share WALS weighs,
  so its weight ``1 + α r'`` is WALS's ``w0 + α (r / r̄) C_i R_u`` with ``w0 = 1``; hence
  ``unobserved_weight`` must stay 1.
- **Zero feedback.** MLlib takes ``r ≤ 0`` as unobserved (preference 0, not counted); WALS
  keeps such a pair observed with weight ``w0``. Such pairs are handed over as the smallest
  positive float32, so they stay observed, as in WALS.
- **Regularisation: where the objectives differ.** MLlib multiplies ``regParam`` by each row's
  number of pairs (ALS-WR); WALS's default λ is the same for every row. With
  ``scale_regularization=False`` (WALS's default) ``regParam = λ / n̄``, ``n̄`` the mean number
  of pairs of the users and items that have any (kept as ``reg_param_``, and fold-in uses it):
  a row of average activity gets WALS's λ, a lighter row less, a heavier row more. With
  ``scale_regularization=True`` both are ALS-WR and solve the same problem.
- **Item weights.** ``item_weight_exponent`` is 0 here, 0.3 in WALS: under ALS-WR a rare item
  is already less regularised, and the extra weight cost nDCG@10 on a validation carve of
  MovieLens 100K's training part (0.246 with 0.3 against 0.275 with 0, local ALS-WR; WALS's
  defaults 0.288; docs/benchmarks.md).
- **Solver and start.** MLlib solves each row's normal equations exactly (Cholesky) from its
  own random unit vectors; ``solver``, ``cg_steps``, ``init_scale`` and ``num_threads`` are
  WALS's and not used to train. One MLlib iteration solves users and items, as a WALS sweep.

Explicit ratings: MLlib fits the observed ratings only, unweighted, with ALS-WR λ and no
biases: WALS with ``feedback="explicit"``, ``unobserved_weight=0``, ``alpha=1``, row weights
off, ``biases=False`` and ``scale_regularization=True``, the defaults here for explicit
(λ = 0.13 as in WALS), and the only settings allowed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Self

import numpy as np
import scipy.sparse as sp
from pydantic import Field, model_validator

from recengine.data.training_data import TrainingData
from recengine.data.vocabulary import Vocabulary
from recengine.errors import DataError, EngineError
from recengine.models.base import Shape, TrainingOptions
from recengine.models.wals import WALS, ModelFitError, _Biases
from recengine.progress import ProgressCallback

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

__all__ = ["SparkALS"]

#: What ``feedback="explicit"`` sets when not given: the only explicit model MLlib fits.
EXPLICIT_DEFAULTS: dict[str, Any] = {"regularization": 0.13, "scale_regularization": True,
                                     "alpha": 1.0, "unobserved_weight": 0.0,
                                     "item_weight_exponent": 0.0, "biases": False}
#: What MLlib fixes, by feedback: (field, value, why).
_FIXED = {
    "implicit": (("unobserved_weight", 1.0, "MLlib weighs every unobserved cell 1"),
                 ("biases", False, "MLlib learns no biases")),
    "explicit": (("unobserved_weight", 0.0, "MLlib's explicit ALS fits observed ratings only"),
                 ("alpha", 1.0, "MLlib weighs every rating 1"),
                 ("item_weight_exponent", 0.0, "MLlib weighs every rating 1"),
                 ("user_weight_exponent", 0.0, "MLlib weighs every rating 1"),
                 ("scale_regularization", True, "MLlib scales λ by each row's ratings"),
                 ("biases", False, "MLlib learns no biases")),
}


class SparkALS(WALS):
    """WALS trained on Spark by MLlib's ALS (see the module docstring for the mapping).

    Examples
    --------
    >>> model = SparkALS(factors=16, master="local[2]")
    >>> model.config.item_weight_exponent, model.config.unobserved_weight
    (0.0, 1.0)
    >>> SparkALS(feedback="explicit").config.scale_regularization
    True
    """

    name = "spark-als"

    class Config(WALS.Config):
        """WALS's configuration, with what Spark adds; fields MLlib fixes are checked."""

        item_weight_exponent: float = Field(
            0.0, ge=0, description="Item weight C_i ∝ n_i^-e (0 here: see the module).")
        master: str = Field("local[2]", min_length=1,
                            description="Spark master: local[N], spark://HOST:PORT, ...")
        blocks: int = Field(0, ge=0, description="MLlib's user and item blocks (0: its "
                            "default, 10); more for larger data.")

        @model_validator(mode="before")
        @classmethod
        def _explicit_defaults(cls, values: Any) -> Any:  # replaces WALS's: MLlib's explicit
            if isinstance(values, Mapping) and values.get("feedback") == "explicit":
                return EXPLICIT_DEFAULTS | dict(values)
            return values

        @model_validator(mode="after")
        def _mllib_can_fit_it(self) -> SparkALS.Config:
            for field, value, why in _FIXED[self.feedback]:
                if getattr(self, field) != value:
                    raise ValueError(f"{field} must be {value} with {self.feedback} feedback "
                                     f"on Spark ({why})")
            return self

    config: Config
    state: ClassVar[tuple[str, ...]] = (*WALS.state, "reg_param_")
    #: MLlib's regParam as trained: λ per pair of a row (fold-in uses it).
    reg_param_: np.ndarray

    def state_shapes(self) -> dict[str, Shape]:
        return super().state_shapes() | {"reg_param_": ()}

    @classmethod
    def search_space(cls, fixed: Mapping[str, Any]) -> dict[str, tuple[str, float, float, bool]]:
        space = super().search_space(fixed)
        space.pop("unobserved_weight", None)  # fixed by MLlib
        return space

    def _row_regularization(self, counts: np.ndarray) -> np.ndarray:
        """MLlib's λ: ``regParam`` times the row's pairs (at least one)."""
        return float(self.reg_param_) * np.maximum(counts, 1).astype(np.float64)

    def _train(self, data: TrainingData, options: TrainingOptions,
               progress: ProgressCallback | None) -> dict[str, Any]:
        from recengine.spark.als import pairs_frame
        from recengine.spark.session import spark_session

        matrix = sp.csr_array(self._matrix(data), dtype=np.float32)
        matrix.sort_indices()
        rows, learned = self._row_weights(matrix)
        values = self._mllib_values(matrix, rows, learned)
        session = spark_session(self.config.master, feature="spark-als")
        frame = pairs_frame(session, rows, matrix.indices, values)
        return self._fit_on_spark(frame, matrix.shape, learned, self._reg_param(matrix),
                                  options, progress)

    def fit_frame(self, pairs: DataFrame, *, options: TrainingOptions | None = None,
                  progress: ProgressCallback | None = None) -> Self:
        """Learn from aggregated pairs on Spark (:func:`recengine.spark.prepare.aggregate`'s
        frame): the vocabularies, row weights and MLlib's values are computed on Spark, and
        only the ids, the rows' pair counts and the factors come to this process, so the
        pairs never have to fit here. Same state as :meth:`fit` on the pairs collected; the
        model keeps no histories (the caller saves or supplies them).

        As :meth:`fit`, the state is installed only when training succeeds.
        """
        from pyspark.sql import functions as F

        from recengine.spark.als import index_pairs, row_counts
        from recengine.spark.session import failure, spark_errors

        options = options or TrainingOptions()
        cfg = self.config
        value = "rating" if cfg.feedback == "explicit" else "feedback"
        with options.thread_limit():
            try:
                indexed = index_pairs(pairs)
                rated = indexed.frame.where(F.col(value).isNotNull()).persist()
                user_counts, item_counts = row_counts(rated, indexed.shape)
                scale = (rated.agg(F.mean(value)).toArrow().column(0)[0].as_py()
                         if value == "feedback" and cfg.confidence == "scaled" else 1.0)
            except spark_errors() as exc:
                raise EngineError(f"preparing spark-als's pairs failed on Spark: "
                                  f"{failure(exc)}") from None
            try:
                if not user_counts.sum():
                    raise DataError("explicit WALS needs ratings; these pairs have none (use "
                                    "feedback='implicit')" if value == "rating"
                                    else "no training interactions")
                learned = self._learned_weights(user_counts, item_counts, scale or 1.0)
                state = self._fit_on_spark(
                    self._mllib_frame(rated, value, learned), indexed.shape, learned,
                    self._reg_param_of(user_counts, item_counts), options, progress)
            finally:
                rated.unpersist()
        self._install(Vocabulary(indexed.users, name="user"),
                      Vocabulary(indexed.items, name="item"), state, None)
        return self

    def _fit_on_spark(self, frame: DataFrame, shape: tuple[int, int],
                      learned: Mapping[str, np.ndarray], reg_param: float,
                      options: TrainingOptions, progress: ProgressCallback | None,
                      ) -> dict[str, Any]:
        """MLlib's fit of ``frame`` (``user, item, rating``: indices, MLlib's values), and
        the state it makes with the row weights ``learned``."""
        from recengine.spark.als import AlsSettings, fit_als
        from recengine.spark.session import spark_session

        cfg = self.config
        if progress:
            progress("training spark-als", 0, 1)
        spark_session(cfg.master, feature="spark-als")  # the master is checked
        settings = AlsSettings(rank=cfg.factors, iterations=cfg.iterations,
                               reg_param=reg_param, implicit=cfg.feedback == "implicit",
                               alpha=cfg.alpha, seed=options.seed_or(cfg.random_state),
                               blocks=cfg.blocks)
        X, Y = fit_als(frame, settings, shape)
        if not (np.isfinite(X).all() and np.isfinite(Y).all()):
            raise ModelFitError("Spark's factors are not finite: lower alpha or raise "
                                "regularization")
        if progress:
            progress("training spark-als", 1, 1)
        no_biases = _Biases(np.float32(0.0), np.zeros(0, np.float32), np.zeros(0, np.float32))
        return (dict(learned) | no_biases.state() | self._factor_state(X, Y)
                | {"reg_param_": np.asarray(reg_param, np.float64)})

    def _mllib_values(self, matrix: sp.csr_array, rows: np.ndarray,
                      learned: Mapping[str, np.ndarray]) -> np.ndarray:
        """What MLlib gets as each pair's rating: the confidence share ``(r / r̄)·C_i·R_u``
        (implicit; at least the smallest positive float32, so a zero stays observed), or the
        rating (explicit)."""
        if self.config.feedback == "explicit":
            return matrix.data
        share = (matrix.data / np.float32(learned["weight_norms_"][2])
                 * learned["item_weights_"][matrix.indices] * learned["user_weights_"][rows])
        return np.maximum(share, np.finfo(np.float32).tiny).astype(np.float32)

    def _mllib_frame(self, rated: DataFrame, value: str,
                     learned: Mapping[str, np.ndarray]) -> DataFrame:
        """:meth:`_mllib_values` on Spark: ``rated``'s pairs as ``user, item, rating``."""
        from pyspark.sql import functions as F

        from recengine.spark.als import with_row_weights

        if value == "rating":
            return rated.select("user", "item", F.col("rating"))
        share = F.col("feedback") / F.lit(float(np.float32(learned["weight_norms_"][2])))
        rated = with_row_weights(rated, learned["user_weights_"], learned["item_weights_"])
        share = share * F.col("item_weight") * F.col("user_weight")
        return rated.select("user", "item", F.greatest(
            share, F.lit(float(np.finfo(np.float32).tiny))).cast("float").alias("rating"))

    def _reg_param(self, matrix: sp.csr_array) -> float:
        """MLlib's regParam: λ itself under ALS-WR, else λ over the mean pairs per row."""
        return self._reg_param_of(np.diff(matrix.indptr),
                                  np.bincount(matrix.indices, minlength=matrix.shape[1]))

    def _reg_param_of(self, user_counts: np.ndarray, item_counts: np.ndarray) -> float:
        """:meth:`_reg_param` of rows with these numbers of pairs."""
        cfg = self.config
        if cfg.scale_regularization:
            return cfg.regularization
        rows_with_pairs = np.count_nonzero(user_counts) + np.count_nonzero(item_counts)
        return cfg.regularization * rows_with_pairs / (2 * int(user_counts.sum()))
