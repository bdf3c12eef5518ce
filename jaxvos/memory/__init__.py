"""Fixed-capacity memories, one file per memory type; each a `flax.struct.dataclass` plus pure functions."""

from jaxvos.memory.key_value import KeyValueMemory, MemoryConfig

__all__ = ["KeyValueMemory", "MemoryConfig"]
