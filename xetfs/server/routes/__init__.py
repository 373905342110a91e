"""HTTP routes: parse, authorize, call a service, format the answer. Routes never import each other."""
