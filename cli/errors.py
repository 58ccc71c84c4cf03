"""One-line command-line errors for train.py: what is wrong with which option, and what would be right.

jsonargparse reports a bad value inside a subclass-mode model as a nested union error of ten or more lines after
ninety lines of usage; `concise` turns the common cases into one line (`--help` still has the usage).
"""
import re

TYPE_NAMES = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string"}


def concise(message):
    """The jsonargparse error `message` as one line naming the option, or the message itself if not recognised."""
    keys = re.findall(r'Parser key "([^"]+)"', message)
    option = "--" + ".".join(keys)
    given = re.search(r"Got value: (.*)|Given value: (.*)", message)
    value = next((group for group in given.groups() if group is not None), "").strip() if given else ""
    if unknown := re.search(r"Option '([\w.]+)' is not accepted", message):
        owner = re.search(r"class_path '[\w.]*?(\w+)'", message)
        where = f" of {owner.group(1)} (list them: python train.py {option}.help {owner.group(1)})" if owner else ""
        return f"{option}.{unknown.group(1)} is not an option{where}"
    if choices := re.search(r"Expected a typing\.Literal\[(.*?)\]", message):
        allowed = ", ".join(choice.strip(" '\"") for choice in choices.group(1).split(","))
        return f"{option} must be one of {allowed}, got {value}"
    if re.search(r"Expected a <class '(tuple|list)'>", message):
        return f"{option} must be a list such as [{value}], got {value}"
    if expected := re.search(r"Expected a <class '(int|float|bool|str)'>", message):
        return f"{option} must be {TYPE_NAMES[expected.group(1)]}, got {value}"
    return message
