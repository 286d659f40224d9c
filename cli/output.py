"""Recommend and predict (--recommend, --recommend_users*, --predict)"""

from absl import flags

flags.DEFINE_integer("top_k", 10, "How many items --recommend prints.", lower_bound=1)
flags.DEFINE_enum("format", "text", ["text", "csv"], "Recommendations as text or as CSV user,rank,item,title,score.")
flags.DEFINE_enum("unseen", "fallback", ["fallback", "model"], "--predict: a pair whose user or item has no "
                  "training rating gets the item's mean rating, else the global mean (fallback), or the model's "
                  "output as --test scores it (model).")
flags.DEFINE_bool("clip_predictions", True, "--predict: clip predictions to the training rating range "
                  "(--noclip_predictions: the model's raw outputs).")
flags.DEFINE_string("output", None, "--predict/--recommend*: the file to write (default: stdout).")
