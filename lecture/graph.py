"""The lecture's computational graph: a = 4, b = 3, c = a + b, d = a·c.

The chain rule on a graph: multiply the local derivatives along a route from output to input, then add the routes.
Reverse mode does the same sums in one backward pass over the edges, giving the derivative of the output with
respect to every node at once — which is why one backward pass suffices to train a whole network.

    python -m lecture.graph
"""
from lecture.command_line import parser_for

ORDER = ("a", "b", "c", "d")  # a topological order: every node after its inputs


def forward(a=4.0, b=3.0):
    c = a + b
    return {"a": a, "b": b, "c": c, "d": a * c}


def local_derivatives(values):
    """{(node, input): ∂node/∂input} for each edge, evaluated at the forward values."""
    return {("c", "a"): 1.0, ("c", "b"): 1.0,  # c = a + b
            ("d", "a"): values["c"], ("d", "c"): values["a"]}  # d = a·c: ∂d/∂a = c, ∂d/∂c = a (other factor fixed)


def routes(edges, output, node):
    """Every route from output down to node, as a list of edges."""
    if output == node:
        return [[]]
    return [[(output, child), *rest] for (parent, child) in edges if parent == output
            for rest in routes(edges, child, node)]


def derivative_by_routes(edges, output, node):
    """∂output/∂node = Σ over routes of the product of the local derivatives along the route."""
    total = 0.0
    for route in routes(edges, output, node):
        product = 1.0
        for edge in route:
            product *= edges[edge]
        total += product
    return total


def backward_pass(edges, output):
    """Reverse mode: ∂output/∂node for every node, visiting each edge exactly once."""
    grads = {node: 0.0 for node in ORDER}
    grads[output] = 1.0
    for node in reversed(ORDER):
        for (parent, child), local in edges.items():
            if parent == node:
                grads[child] += grads[node] * local  # pass the gradient down the edge, add at the meeting point
    return grads


def main(argv=None):
    parser_for(__doc__).parse_args(argv)  # no options: --help, and any argument refused
    values = forward()
    edges = local_derivatives(values)
    print(f"d = {values['d']:g}")
    for node in ("a", "b", "c"):
        print(f"∂d/∂{node} = {derivative_by_routes(edges, 'd', node):g} over routes {routes(edges, 'd', node)}")
    print("one backward pass:", backward_pass(edges, "d"))


if __name__ == "__main__":
    main()
