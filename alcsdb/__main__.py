from .cli import main

if __name__ == "__main__":  # not when a dask worker process (spawn) imports it as __mp_main__
    main()
