"""TF-Slim network definitions that `tf_slim.nets` lacks."""
