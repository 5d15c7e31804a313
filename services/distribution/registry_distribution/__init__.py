"""registry_distribution"""
