"""CLIP on the 16x16 digits, captioned "a handwritten seven": zero-shot digit accuracy by
scoring the ten captions (genjax/models/clip.py; configs/clip_shapes.py says how to run it).

    genjax train --config configs/clip_digits.py --workdir runs/clip_digits
    genjax eval  --workdir runs/clip_digits --checkpoint best

With 10 captions the best batch loss is about log(batch) - log 10 (see the model docstring).
"""

from genjax.configs import load_sibling


def get_config():
    config = load_sibling(__file__, "clip_shapes")
    with config.unlocked():
        config.data.name = "digits16"
        config.model.update(image_shape=(16, 16, 1), captions="digits", text_len=3,
                            image_channels=(16, 32))
        config.training.update(batch_size=64, num_steps=1500)
    return config
