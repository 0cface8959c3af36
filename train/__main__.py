"""Entry point for ``python -m train``. Training is planned but not implemented yet."""

import sys


def main() -> int:
    print("Training is not implemented yet. Inference: python app.py or python -m sam (see README.md).",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
