"""Allows ``python -m kubeloop`` as an alias of the ``kubeloop`` console script."""

from kubeloop.cli import main

raise SystemExit(main())
