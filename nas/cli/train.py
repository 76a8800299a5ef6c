"""nas-train: train one architecture on one dataset; save a self-contained model directory.

The work is the library's (`nas.api.train_configured`); this module reads
the config, prints the architecture and reports.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from nas.api.datasource import from_data_config
from nas.api.train import train_configured
from nas.cli import run
from nas.api import settings


@hydra.main(config_path=run.CONFIG_DIR, config_name="train", version_base="1.3")
@run.exits_on_bad_input("nas-train")
def main(cfg: DictConfig) -> dict:
    run.configure_jax(cfg.runtime)
    directory = run.run_dir()
    config = settings.train_config(cfg)  # settings are checked before any data is read
    spec = from_data_config(cfg.data)
    arch = settings.arch(cfg.model, spec.dataset)
    print(arch.summary(spec.dataset.input_shape), flush=True)
    return run.sweeper_return(cfg, run.report(directory, train_configured(cfg, directory, spec, arch, config)))


if __name__ == "__main__":
    main()
