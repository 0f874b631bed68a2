import sys

from bayestorch.experiment import main
from experiments import REGISTRY

sys.exit(main(sys.argv[1:], REGISTRY))
