"""Library: hyperparameter search with Keras Tuner: the space (`space`), one trial per fit run (`trials`), the
search and its roles (`search`), the report (`report`), and Keras Tuner's private APIs behind `compat`."""
