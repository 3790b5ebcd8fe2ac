"""Library: text sources to token ids (`corpus`) and the tf.data pipelines of each training scheme (`pipeline`)."""
