"""Small v1-style cfgs for the training tests, written as Darknet cfg text."""


def small_cfg(size=28, side=7, num=2, classes=3, filters=(4, 8), batch_normalize=0, sqrt=1, extra_net="",
              dropout=False):
    """Convolutions with a 2x2/2 max-pool after each (size / 2**len(filters) must equal side),
    then one connected layer feeding a [detection] layer."""
    convs = "".join(f"[convolutional]\nbatch_normalize={batch_normalize}\nfilters={f}\nsize=3\nstride=1\npad=1\n"
                    f"activation=leaky\n\n[maxpool]\nsize=2\nstride=2\n\n" for f in filters)
    drop = "[dropout]\nprobability=0.5\n\n" if dropout else ""
    return (f"[net]\nbatch=4\nheight={size}\nwidth={size}\nchannels=3\nlearning_rate=0.01\nmomentum=0.9\n"
            f"decay=0.0005\n{extra_net}\n{convs}{drop}[connected]\noutput={side * side * (num * 5 + classes)}\n"
            f"activation=linear\n\n[detection]\nclasses={classes}\ncoords=4\nrescore=1\nside={side}\nnum={num}\n"
            f"softmax=0\nsqrt={sqrt}\njitter=0.2\nobject_scale=1\nnoobject_scale=0.5\nclass_scale=1\ncoord_scale=5\n")
