"""The one exception type that turns into a clean CLI error (exit code 2, one message)."""


class UserError(Exception):
    """Bad input from the user: unknown names, impossible values, missing data files.

    Raised before anything is written. The CLI prints the message and exits with code 2.
    """


def unknown(kind: str, name: object, known) -> UserError:
    """``unknown task 'cifar'; known: cifar_resnet, gnn_graphland, ...``"""
    return UserError(f"unknown {kind} {name!r}; known: {', '.join(sorted(map(str, known)))}")


def missing_data(what: str, expected: object, how: str) -> UserError:
    """``missing CIFAR-10: expected /x/cifar-10-batches-py/data_batch_1; fetch ... and put it there``"""
    return UserError(f"missing {what}: expected {expected}; {how}")
