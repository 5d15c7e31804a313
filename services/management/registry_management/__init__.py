"""registry_management"""
