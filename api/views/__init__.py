"""HTTP views, one module per resource, each exposing a flask-smorest ``Blueprint`` named ``blp``."""
