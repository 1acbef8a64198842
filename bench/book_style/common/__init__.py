"""Book-style building blocks: functions, layers, optimizers, nets and a trainer."""
