"""One module per kind of resource (netavark's driver split): each owns its
conflicts, its diff against the kernel with the reasons `vethlab plan` prints, and
typed actions that apply themselves, return their undo and say whether the
re-read after apply checks them.  drivers/registry.py lists them in planning
order; reconcile/actions.py holds the types they share with the planner and the
executor."""
