"""Knowledge distillation: layer maps between teacher and student, and the distilling train step."""
