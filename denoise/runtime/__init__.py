"""What the commands learn at run time: the machine they run on, and the OmegaConf resolvers
that let ``conf/`` pick defaults from it."""
