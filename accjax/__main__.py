import sys

from accjax._src.cli import main

sys.exit(main(sys.argv[1:]))
