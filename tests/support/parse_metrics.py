"""Parses a metrics exposition from stdin with Prometheus' own Python client.

Usage: parse_metrics.py text|openmetrics
Prints the families as JSON: [{"name", "type", "samples": [{"name", "labels", "value"}]}].
Exits non-zero (with the parser's message) when the exposition does not parse.
"""
import json
import math
import sys

from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text

parse = {"text": parse_text, "openmetrics": parse_openmetrics}[sys.argv[1]]
families = [
    {
        "name": family.name,
        "type": family.type,
        "samples": [
            {
                "name": sample.name,
                "labels": sample.labels,
                "value": None if math.isinf(sample.value) else sample.value,
            }
            for sample in family.samples
        ],
    }
    for family in parse(sys.stdin.read())
]
json.dump(families, sys.stdout)
