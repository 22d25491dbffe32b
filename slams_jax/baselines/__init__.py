"""Classical comparisons: interpolation, persistence, climatology, and 3D-Var/OI with a static covariance."""
