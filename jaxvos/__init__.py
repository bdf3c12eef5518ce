"""jaxvos: semi-supervised video object segmentation in JAX/Flax.

Given a video and the masks of its objects where they first appear, jaxvos segments those objects in every
later frame. The Python API (`jaxvos.api`, all of it here):

    import jaxvos

    model = jaxvos.load("stcn-r18")                  # a model name (random weights) or a checkpoint directory
    processor = model.processor()                    # one per video
    for index, frame in enumerate(frames):           # uint8 [H W 3] RGB, as frames arrive
      ids = processor.step(frame, masks.get(index))  # uint8 [H W] object ids; a mask adds the objects new in it
    processor.drop(2)                                # stop segmenting object 2

    ids = jaxvos.segment_video(model, frames, {0: first_mask})   # a whole video in one call: uint8 [T H W]

    load(name_or_checkpoint, size=480, dtype="float32") -> Model
    Model.processor(max_objects=None) -> Processor
    Processor.step(image, mask=None, *, return_probs=False) -> ids (, probs)
    Processor.drop(object_id); Processor.object_ids
    segment_video(model, frames, masks) -> uint8 [T H W]
    configure_jax(): the persistent compilation cache (~/.cache/jaxvos/xla) and quiet XLA logs; `load` calls it

The same from the command line: `jaxvos segment`, `jaxvos evaluate`, `jaxvos train`, ... (`jaxvos --help`).
Under the API: `jaxvos.models` (the families: STM, STCN, ...), `jaxvos.inference` (the engine), `jaxvos.ops`,
`jaxvos.memory`, `jaxvos.training`, `jaxvos.metrics`, `jaxvos.convert` (PyTorch checkpoints).
"""

from jaxvos.api import Model, Processor, configure_jax, load, segment_video

__version__ = "0.1.0.dev0"

__all__ = ["Model", "Processor", "configure_jax", "load", "segment_video"]
