"""The e2e suite's options: what each provider needs, refused early with a clear message."""

import argparse

import pytest
from options import OPTIONS, E2EOptions, OptionsError, parse_options


def parse(*argv: str) -> E2EOptions:
    parser = argparse.ArgumentParser()
    for flag, settings in OPTIONS:
        parser.add_argument(flag, **settings)
    return parse_options(vars(parser.parse_args(argv)))


KIND_PINS = ("--kind-node-image", "kindest/node:v1", "--metrics-server-version", "v0.8.0")


def test_kind_is_the_default_and_needs_the_pins() -> None:
    options = parse(*KIND_PINS)
    assert options.provider == "kind"
    assert options.real_pods
    with pytest.raises(OptionsError, match="--kind-node-image and --metrics-server-version"):
        parse()


def test_existing_takes_a_kubeconfig_and_simulated_pods() -> None:
    options = parse("--provider", "existing", "--kubeconfig", "/k", "--simulated-pods")
    assert str(options.kubeconfig) == "/k"
    assert not options.real_pods


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ((*KIND_PINS, "--simulated-pods"), "--simulated-pods is for --provider existing"),
        ((*KIND_PINS, "--kubeconfig", "/k"), "--kubeconfig is for --provider existing"),
        (("--provider", "existing", "--keep"), "--keep is for --provider kind"),
    ],
)
def test_contradictions_are_refused(argv: tuple[str, ...], message: str) -> None:
    with pytest.raises(OptionsError, match=message):
        parse(*argv)


def test_an_unknown_provider_is_refused() -> None:
    with pytest.raises(SystemExit):
        parse("--provider", "minikube")
