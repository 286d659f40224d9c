"""Your own file (--dataset path/to/file.csv|.tsv|.dat|.parquet; --predict's pairs file)"""

from absl import flags

flags.DEFINE_string("user_col", None, "The user column: a header name or a field number from 1 (default: detected).")
flags.DEFINE_string("item_col", None, "The item column (default: detected).")
flags.DEFINE_string("rating_col", None, "The rating column; 'none': implicit data, every row a positive "
                    "(default: detected; implicit when there is none).")
flags.DEFINE_string("time_col", None, "The time column (unix seconds or dates); 'none': ignore (default: detected).")
flags.DEFINE_string("sep", None, "Field separator: ',', tab, '::', ';', '|' or space (default: detected).")
