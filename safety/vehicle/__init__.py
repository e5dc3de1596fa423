"""The vehicle: canonical signals, vehicle profiles (DBC signals -> canonical signals), decoders
generated from DBC definitions, frame decoding, and the vehicle state (staleness, plausibility,
hysteresis, the derived driving state and workload).
"""
