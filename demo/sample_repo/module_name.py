def add(a, b):
    return a + b


def average(values=[]):
    total = 0
    for v in values:
        total = total + v
    return total / len(values)
