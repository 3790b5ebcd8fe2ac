"""tf.distribute for training: MirroredStrategy on one machine, MultiWorkerMirroredStrategy across machines.

The stateful scheme keeps its contract under a strategy: the global batch of B contiguous streams is split
into blocks of B / R rows, replica r always gets rows [r*B/R, (r+1)*B/R), and each replica's model (built
with the per-replica batch size) carries the state of its own rows.

Example:
    strategy = make_strategy("mirrored")
    with strategy.scope():
        model = build_model(..., batch_size=per_replica_batch(strategy, 64), stateful=True)
"""

from __future__ import annotations

import json
import os

import tensorflow as tf

from tfchar.core.errors import ConfigError
from tfchar.ops.loss import token_nll, weighted_mean


def make_strategy(name: str) -> tf.distribute.Strategy:
    """default: one device (a GPU if there is one); mirrored: all local GPUs, else all logical CPUs;
    multi_worker: the cluster described by TF_CONFIG."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        return tf.distribute.MirroredStrategy(devices=devices)
    if name == "multi_worker":
        if not os.environ.get("TF_CONFIG"):
            raise ConfigError("train.strategy=multi_worker needs TF_CONFIG describing the cluster and this "
                              "worker's task (see the README's multi-worker section)")
        try:
            json.loads(os.environ["TF_CONFIG"])
        except ValueError:
            raise ConfigError("TF_CONFIG is not valid JSON: fix the cluster description") from None
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ConfigError(f"unknown train.strategy {name!r}; use default, mirrored or multi_worker")


def per_replica_batch(strategy, batch_size: int) -> int:
    n = strategy.num_replicas_in_sync
    if batch_size % n:
        raise ConfigError(f"data.batch_size={batch_size} does not split over {n} replicas: use a multiple of {n}")
    return batch_size // n


def is_chief(strategy) -> bool:
    """Only the chief writes checkpoints, logs and run files; other workers just train."""
    return bool(strategy.extended.should_checkpoint)


def distribute_dataset(strategy, make_global_dataset, batch_size: int):
    """Split each global batch [B, T] into per-replica row blocks, in replica order, for every worker."""
    n = strategy.num_replicas_in_sync
    per = batch_size // n

    def dataset_fn(ctx: tf.distribute.InputContext):
        local = n // ctx.num_input_pipelines
        first = ctx.input_pipeline_id * local

        def blocks(x, y):  # x, y: [B, T] -> `local` elements of [B/R, T], this worker's replicas in order
            xs = tf.reshape(x, [n, per, -1])[first:first + local]
            ys = tf.reshape(y, [n, per, -1])[first:first + local]
            return tf.data.Dataset.from_tensor_slices((xs, ys))

        ds = make_global_dataset().flat_map(blocks)
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
        return ds.with_options(options).prefetch(tf.data.AUTOTUNE)

    return strategy.distribute_datasets_from_function(dataset_fn)


def make_distributed_train_step(strategy, model, optimizer, grad_clip: float, loss_weights=None):
    """Like `step.make_train_step`, across replicas: (x, y) per-replica -> (global mean loss, norm).

    Gradients are all-reduced before global-norm clipping, so clipping sees the same norm as on one device.
    Keras's optimizer sums gradients across replicas again inside `apply_gradients`; each replica hands it
    1/R of the reduced sum so that second sum restores it exactly.
    """
    n = strategy.num_replicas_in_sync
    weights = None if loss_weights is None else tf.constant(loss_weights, tf.float32)
    variables = model.trainable_variables
    with strategy.scope():
        optimizer.build(variables)  # variables created inside strategy.run would break the traced step

    def replica_step(x, y):
        with tf.GradientTape() as tape:
            loss = weighted_mean(token_nll(y, model(x, training=True)), weights) / n  # share of the mean
        grads = [tf.convert_to_tensor(g) for g in tape.gradient(loss, variables)]
        grads = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, grads)
        norm = tf.linalg.global_norm(grads)
        if grad_clip > 0:
            grads, _ = tf.clip_by_global_norm(grads, grad_clip, use_norm=norm)
        optimizer.apply_gradients(zip([g / n for g in grads], variables))
        return loss, norm

    @tf.function
    def train_step(x, y):
        loss, norm = strategy.run(replica_step, args=(x, y))
        return (strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None),
                strategy.reduce(tf.distribute.ReduceOp.MEAN, norm, axis=None))

    return train_step
